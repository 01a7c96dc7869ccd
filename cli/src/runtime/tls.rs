//! `paytool tls init`: a local certificate authority and a certificate for `*.local.test`,
//! the mkcert idea with rcgen. The CA key never leaves `.paytool/tls/` (mode 0600).

use crate::runtime::home::{write_atomic, Home};
use crate::support::exit::{fail, Code};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Names the leaf certificate covers. The wildcard covers every gateway host; the explicit
/// names are there for clients that dislike wildcards.
pub const HOSTS: &[&str] = &[
    "sso", "api", "merchant", "wallet", "whoami", "registry", "git", "ci",
];
/// Browsers refuse leaf certificates valid for more than 398 days.
const LEAF_VALIDITY_DAYS: i64 = 397;
const CA_VALIDITY_DAYS: i64 = 3650;
/// Where Debian's update-ca-certificates picks up extra roots.
const SYSTEM_TRUST_DIR: &str = "/usr/local/share/ca-certificates";

pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn of(home: &Home) -> Self {
        let dir = home.tls_dir();
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            cert: dir.join("local.test.pem"),
            key: dir.join("local.test-key.pem"),
        }
    }

    pub fn exist(&self) -> bool {
        [&self.ca_cert, &self.ca_key, &self.cert, &self.key]
            .iter()
            .all(|p| p.is_file())
    }
}

/// Creates the CA and the leaf when absent (or always with `force`). Returns whether it wrote.
pub fn init(home: &Home, force: bool) -> anyhow::Result<bool> {
    let files = TlsFiles::of(home);
    if files.exist() && !force {
        return Ok(false);
    }
    let installation = &home.marker.installation_id;
    let mut names = vec![
        "*.local.test".to_string(),
        "local.test".to_string(),
        "localhost".to_string(),
    ];
    names.extend(HOSTS.iter().map(|host| format!("{host}.local.test")));
    // The installation id in the name tells two local CAs apart in a trust store.
    let issued = issue(
        &format!("paytool local CA {}", &installation[..8]),
        names,
        "*.local.test",
        LEAF_VALIDITY_DAYS,
    )?;
    write_atomic(&files.ca_key, issued.ca_key.as_bytes(), 0o600)?;
    write_atomic(&files.ca_cert, issued.ca_cert.as_bytes(), 0o644)?;
    write_atomic(&files.key, issued.leaf_key.as_bytes(), 0o600)?;
    // The chain nginx serves: the leaf, then the CA.
    write_atomic(&files.cert, issued.chain().as_bytes(), 0o644)?;
    Ok(true)
}

/// A certificate authority and one server certificate it signed, as PEM.
pub struct Issued {
    pub ca_cert: String,
    pub ca_key: String,
    pub leaf_cert: String,
    pub leaf_key: String,
}

impl Issued {
    /// What a server presents: the leaf, then the CA.
    pub fn chain(&self) -> String {
        format!("{}{}", self.leaf_cert, self.ca_cert)
    }
}

/// A new CA (its common name `ca_name`, valid ten years) and a server certificate signed by
/// it for `dns_names` and 127.0.0.1, valid `leaf_days`: the gateway's, and the local API
/// server's (`paytool kube serve`).
pub fn issue(
    ca_name: &str,
    dns_names: Vec<String>,
    leaf_name: &str,
    leaf_days: i64,
) -> anyhow::Result<Issued> {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::OrganizationName, "paytool local development CA");
    ca_dn.push(DnType::CommonName, ca_name);
    ca_params.distinguished_name = ca_dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;

    let mut leaf_params = CertificateParams::new(dns_names)?;
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let mut leaf_dn = DistinguishedName::new();
    leaf_dn.push(DnType::CommonName, leaf_name);
    leaf_params.distinguished_name = leaf_dn;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.not_before = now - Duration::hours(1);
    leaf_params.not_after = now + Duration::days(leaf_days);
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;
    Ok(Issued {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        leaf_cert: leaf_cert.pem(),
        leaf_key: leaf_key.serialize_pem(),
    })
}

/// The system trust store's copy of this installation's CA.
pub fn system_trust_path(home: &Home) -> PathBuf {
    Path::new(SYSTEM_TRUST_DIR).join(format!("paytool-{}.crt", &home.marker.installation_id[..8]))
}

/// Adds the CA to the Debian system trust store (`--trust`).
pub fn trust(home: &Home) -> anyhow::Result<PathBuf> {
    let files = TlsFiles::of(home);
    let target = system_trust_path(home);
    if !nix::unistd::Uid::effective().is_root() {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "adding the CA to the system trust store needs root: run `sudo cp {} {} && sudo update-ca-certificates`",
                files.ca_cert.display(),
                target.display()
            ),
        ));
    }
    std::fs::create_dir_all(SYSTEM_TRUST_DIR)?;
    std::fs::copy(&files.ca_cert, &target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    refresh_system_trust()?;
    Ok(target)
}

/// Removes this installation's CA from the system trust store, if it was added.
pub fn untrust(home: &Home) -> anyhow::Result<bool> {
    let target = system_trust_path(home);
    if !target.exists() {
        return Ok(false);
    }
    std::fs::remove_file(&target)?;
    refresh_system_trust()?;
    Ok(true)
}

fn refresh_system_trust() -> anyhow::Result<()> {
    let status = std::process::Command::new("update-ca-certificates")
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|_| {
            fail(
                Code::Prerequisite,
                "update-ca-certificates is missing: run `apt-get install -y ca-certificates`",
            )
        })?;
    if !status.success() {
        return Err(fail(
            Code::Failed,
            "update-ca-certificates failed; see its output above",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_leaf_certificate_verifies_against_the_generated_ca_for_every_gateway_host() {
        let root = tempfile::tempdir().expect("tempdir");
        let home = Home::open_or_create(&root.path().join("state"), root.path()).expect("home");
        assert!(init(&home, false).expect("generated"));
        assert!(
            !init(&home, false).expect("second run"),
            "a second init keeps the existing CA"
        );
        let files = TlsFiles::of(&home);
        // openssl is the independent judge here: our own code must not grade itself.
        for host in HOSTS
            .iter()
            .map(|h| format!("{h}.local.test"))
            .chain(["anything.local.test".to_string()])
        {
            let output = Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&files.ca_cert)
                .args(["-verify_hostname", &host, "-purpose", "sslserver"])
                .arg(&files.cert)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "{host}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let wrong = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&files.ca_cert)
            .args(["-verify_hostname", "example.com"])
            .arg(&files.cert)
            .output()
            .expect("openssl runs");
        assert!(
            !wrong.status.success(),
            "the certificate must not cover other domains"
        );
    }
}
