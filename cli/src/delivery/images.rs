//! `paytool images build|push`: OCI images of the services without a container daemon.
//!
//! An image is one layer over nothing (`FROM scratch`): the service's binary, the shared
//! libraries it links (as `ldd` resolves them on this machine, the dynamic loader included),
//! `/etc/passwd` and `/etc/group` naming an unprivileged user, and an empty `/tmp`. The config
//! runs the binary as that user (uid 10001) and labels the image with the git revision it was
//! built from. Everything in the layer has a fixed owner and time, so the same binary and
//! libraries give the same digest: a rebuild of an unchanged service is the same image.
//!
//! `build` writes an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) under the
//! installation (`images/NAME/`); `push` sends it to the installation's registry through the
//! gateway (TLS verified against the platform's CA, the registry's credentials) with
//! oci-client, tagged with the revision and `latest`.

use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use anyhow::Context;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    OciImageManifest, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The unprivileged user every image runs as (Kubernetes' `runAsNonRoot` checks the number).
pub const UID: u32 = 10001;
/// The label and annotation that carry the git revision (OCI's pre-defined key).
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";
/// Repositories in the registry: `paytool/NAME`.
pub const REPOSITORY_PREFIX: &str = "paytool";
/// The most shared libraries an image takes from `ldd`: the services link about ten; far more
/// means the binary is not what we think it is.
const LIBRARIES_MAX: usize = 64;
/// The largest file an image takes (a debug build of a service is about 300 MB).
const FILE_MAX_BYTES: u64 = 1 << 30;
/// A push or pull of one image gives up after this (the layer is up to a few hundred MB,
/// over loopback).
const TRANSFER_TIMEOUT_MS: u64 = 300_000;
const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// What `build` made.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub service: String,
    /// The OCI image layout's directory.
    pub layout: PathBuf,
    pub revision: String,
    /// `sha256:…` of the manifest: the image's identity.
    pub digest: String,
    pub config_digest: String,
    pub layer_digest: String,
    pub layer_bytes: u64,
    /// The binary and libraries in the layer, by their path in the image.
    pub files: Vec<String>,
}

/// What `push` sent.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub service: String,
    /// `registry.local.test[:port]/paytool/NAME:REVISION`.
    pub reference: String,
    /// `…@sha256:…`: the image by digest, as the registry answers it.
    pub by_digest: String,
    pub digest: String,
}

fn layout_dir(home: &Home, service: &str) -> PathBuf {
    home.dir.join("images").join(service)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The commit the project is at: `git rev-parse HEAD`, with `-dirty` when the working tree
/// has changes (an image of uncommitted code must not pass for the commit's).
pub fn revision(project: &Path) -> anyhow::Result<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(project)
            .output()
            .map_err(|e| fail(Code::Prerequisite, format!("cannot run git: {e}")))
    };
    let head = git(&["rev-parse", "HEAD"])?;
    if !head.status.success() {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "{} is not a git checkout with a commit: images are labelled with the revision they were built from",
                project.display()
            ),
        ));
    }
    let sha = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    let dirty = !status.stdout.is_empty();
    Ok(if dirty { format!("{sha}-dirty") } else { sha })
}

/// The shared libraries `binary` loads, as `ldd` resolves them here (the loader included).
fn libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| fail(Code::Prerequisite, format!("cannot run ldd: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    anyhow::ensure!(
        output.status.success(),
        "ldd {} failed: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let mut found = Vec::new();
    for line in text.lines() {
        // "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x…)", "/lib64/ld-linux-x86-64.so.2 (0x…)",
        // "linux-vdso.so.1 (0x…)" (in the kernel, no file).
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            found.push(PathBuf::from(path));
        }
        if line.contains("not found") {
            return Err(fail(
                Code::Prerequisite,
                format!(
                    "{} needs a library this machine lacks: {}",
                    binary.display(),
                    line.trim()
                ),
            ));
        }
    }
    anyhow::ensure!(
        found.len() <= LIBRARIES_MAX,
        "{} links {} libraries, more than the {LIBRARIES_MAX} an image takes",
        binary.display(),
        found.len()
    );
    found.sort();
    found.dedup();
    Ok(found)
}

/// A tar header with a fixed owner and time: the layer's bytes depend on contents alone.
fn header(size: usize, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(kind);
    header
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let mut header = header(bytes.len(), mode, tar::EntryType::Regular);
    tar.append_data(&mut header, path, bytes)?;
    Ok(())
}

fn append_dir(tar: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> anyhow::Result<()> {
    let mut header = header(0, mode, tar::EntryType::Directory);
    tar.append_data(&mut header, path, std::io::empty())?;
    Ok(())
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= FILE_MAX_BYTES,
        "{} is {size} bytes, more than an image takes ({FILE_MAX_BYTES})",
        path.display()
    );
    Ok(std::fs::read(path)?)
}

/// The layer: the binary at `/usr/local/bin/NAME`, its libraries where `ldd` found them, the
/// user and group files, `/tmp`. Returns the uncompressed tar (its digest is the diff id) and
/// the files' paths.
fn layer(service: &str, binary: &Path) -> anyhow::Result<(Vec<u8>, Vec<String>)> {
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    files.insert(
        format!("usr/local/bin/{service}"),
        (0o755, read_bounded(binary)?),
    );
    for library in libraries(binary)? {
        // The content, not the link: the path ldd printed is the one the loader opens.
        let bytes = read_bounded(&library)?;
        let inside = library
            .to_str()
            .context("a library path that is not UTF-8")?
            .trim_start_matches('/')
            .to_string();
        files.insert(inside, (0o755, bytes));
    }
    files.insert(
        "etc/passwd".into(),
        (
            0o644,
            format!("root:x:0:0:root:/root:/usr/sbin/nologin\npaytool:x:{UID}:{UID}:paytool:/nonexistent:/usr/sbin/nologin\n").into_bytes(),
        ),
    );
    files.insert(
        "etc/group".into(),
        (0o644, format!("root:x:0:\npaytool:x:{UID}:\n").into_bytes()),
    );
    let mut tar = tar::Builder::new(Vec::new());
    // Parent directories first, each once, in order: a tar that unpacks the same everywhere.
    let mut dirs: Vec<String> = files
        .keys()
        .flat_map(|path| {
            let parts: Vec<&str> = path.split('/').collect();
            (1..parts.len())
                .map(|n| parts[..n].join("/"))
                .collect::<Vec<_>>()
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in &dirs {
        append_dir(&mut tar, dir, 0o755)?;
    }
    append_dir(&mut tar, "tmp", 0o1777)?;
    for (path, (mode, bytes)) in &files {
        append(&mut tar, path, *mode, bytes)?;
    }
    let tar = tar.into_inner()?;
    Ok((tar, files.keys().map(|p| format!("/{p}")).collect()))
}

/// gzip with no name and no time in its header: the same tar gives the same bytes. The
/// fastest level: a debug build's layer is about 270 MB of tar, and level 6 spent minutes of
/// a core on three of them for a few percent less to store on loopback.
fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// The image's configuration (OCI's image config, built with oci-spec), as canonical JSON
/// (keys sorted) so that its digest is stable.
fn config(service: &str, revision: &str, diff_id: &str) -> anyhow::Result<Vec<u8>> {
    use oci_spec::image::{Arch, ConfigBuilder, ImageConfigurationBuilder, Os, RootFsBuilder};
    let labels = [
        (REVISION_LABEL.to_string(), revision.to_string()),
        (
            "org.opencontainers.image.title".to_string(),
            service.to_string(),
        ),
        (
            "org.opencontainers.image.vendor".to_string(),
            "paytool".to_string(),
        ),
    ]
    .into_iter()
    .collect::<std::collections::HashMap<_, _>>();
    let runtime = ConfigBuilder::default()
        .user(format!("{UID}:{UID}"))
        .entrypoint(vec![format!("/usr/local/bin/{service}")])
        .env(vec![
            "PATH=/usr/local/bin".to_string(),
            "RUST_LOG=info".to_string(),
        ])
        .working_dir("/tmp")
        .labels(labels)
        .stop_signal("SIGTERM")
        .build()?;
    let image = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(runtime)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()?,
        )
        .build()?;
    // Through a Value: serde_json's maps are sorted, oci-spec's HashMaps are not.
    Ok(serde_json::to_vec(&serde_json::to_value(&image)?)?)
}

/// Builds `service`'s image from `binary` into the installation's `images/NAME/` layout.
/// `checkout` is the working tree the binary was built from: its commit labels the image.
pub fn build(home: &Home, service: &str, binary: &Path, checkout: &Path) -> anyhow::Result<Built> {
    if !binary.is_file() {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "{} is not built: `cargo build --workspace --bins` (add --release for release images)",
                binary.display()
            ),
        ));
    }
    let revision = revision(checkout)?;
    let (tar, files) = layer(service, binary)?;
    let diff_id = sha256(&tar);
    let layer = ImageLayer::new(gzip(&tar)?, IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(), None);
    let config = Config::new(
        config(service, &revision, &diff_id)?,
        IMAGE_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let annotations: BTreeMap<String, String> =
        [(REVISION_LABEL.to_string(), revision.clone())].into();
    let mut manifest =
        OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let digest = sha256(&manifest_bytes);

    let layout = layout_dir(home, service);
    let blobs = layout.join("blobs/sha256");
    if layout.exists() {
        std::fs::remove_dir_all(&layout)?;
    }
    std::fs::create_dir_all(&blobs)?;
    for bytes in [&layer.data[..], &config.data[..], &manifest_bytes[..]] {
        let name = sha256(bytes);
        std::fs::write(blobs.join(name.trim_start_matches("sha256:")), bytes)?;
    }
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "digest": digest,
            "size": manifest_bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": revision },
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(Built {
        service: service.to_string(),
        layout,
        revision,
        digest,
        config_digest: sha256(&config.data),
        layer_digest: sha256(&layer.data),
        layer_bytes: layer.data.len() as u64,
        files,
    })
}

/// An image layout read back: the manifest and the blobs it names, each checked against its
/// digest.
struct Layout {
    revision: String,
    /// The manifest as built: pushed as these bytes, so that the registry's digest is ours.
    manifest_bytes: Vec<u8>,
    manifest: OciImageManifest,
    config: Config,
    layers: Vec<ImageLayer>,
}

fn read_layout(home: &Home, service: &str) -> anyhow::Result<Layout> {
    let dir = layout_dir(home, service);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).map_err(|_| {
            fail(
                Code::Prerequisite,
                format!("{service} has no image: `paytool images build {service}` first"),
            )
        })?)?;
    let entry = &index["manifests"][0];
    let revision = entry["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .context("the layout's index names no revision")?
        .to_string();
    let blob = |digest: &str| -> anyhow::Result<Vec<u8>> {
        let hex = digest
            .strip_prefix("sha256:")
            .context("a digest that is not sha256")?;
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex))?;
        anyhow::ensure!(
            sha256(&bytes) == digest,
            "{service}'s image layout is damaged: blob {digest} does not match its digest (build it again)"
        );
        Ok(bytes)
    };
    let manifest_bytes = blob(
        entry["digest"]
            .as_str()
            .context("the index names no manifest")?,
    )?;
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)?;
    let config = Config::new(
        blob(&manifest.config.digest)?,
        manifest.config.media_type.clone(),
        None,
    );
    let layers = manifest
        .layers
        .iter()
        .map(|layer| {
            Ok(ImageLayer::new(
                blob(&layer.digest)?,
                layer.media_type.clone(),
                None,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Layout {
        revision,
        manifest_bytes,
        manifest,
        config,
        layers,
    })
}

/// The installation's registry as a client sees it: its host (through the gateway), the
/// credentials, and a client that trusts the platform's CA.
pub struct Registry {
    pub host: String,
    pub auth: RegistryAuth,
    pub client: Client,
}

impl Registry {
    pub fn of(home: &Home) -> anyhow::Result<Self> {
        if !home.marker.delivery {
            return Err(fail(
                Code::Usage,
                "this installation has no registry: `paytool down`, then `paytool up --delivery`",
            ));
        }
        let secrets = home.secrets()?;
        let ca = std::fs::read(crate::runtime::tls::TlsFiles::of(home).ca_cert)?;
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Https,
            extra_root_certificates: vec![oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: ca,
            }],
            read_timeout: Some(Duration::from_millis(TRANSFER_TIMEOUT_MS)),
            connect_timeout: Some(Duration::from_millis(CONNECT_TIMEOUT_MS)),
            ..ClientConfig::default()
        });
        let host = format!("registry.local.test{}", home.ports().https_suffix());
        Ok(Self {
            host,
            auth: RegistryAuth::Basic(
                crate::runtime::components::registry::USER.to_string(),
                crate::runtime::components::registry::password(&secrets),
            ),
            client,
        })
    }

    pub fn reference(&self, service: &str, tag: &str) -> Reference {
        Reference::with_tag(
            self.host.clone(),
            format!("{REPOSITORY_PREFIX}/{service}"),
            tag.to_string(),
        )
    }
}

/// Pushes `service`'s built image, tagged with its revision and `latest`.
pub async fn push(home: &Home, service: &str) -> anyhow::Result<Pushed> {
    let layout = read_layout(home, service)?;
    let registry = Registry::of(home)?;
    let reference = registry.reference(service, &layout.revision);
    // The blobs, then the manifest as the very bytes built (oci-client's `push` would write
    // the manifest anew, canonical JSON, under another digest than the layout's), under the
    // revision and `latest`.
    let client = &registry.client;
    client
        .store_auth_if_needed(reference.resolve_registry(), &registry.auth)
        .await;
    let send = async {
        for (layer, descriptor) in layout.layers.iter().zip(&layout.manifest.layers) {
            client
                .push_blob(&reference, layer.data.clone(), &descriptor.digest)
                .await?;
        }
        client
            .push_blob(
                &reference,
                layout.config.data.clone(),
                &layout.manifest.config.digest,
            )
            .await?;
        for tag in [layout.revision.as_str(), "latest"] {
            client
                .push_manifest_raw(
                    &registry.reference(service, tag),
                    layout.manifest_bytes.clone(),
                    reqwest::header::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
                )
                .await?;
        }
        Ok::<(), oci_client::errors::OciDistributionError>(())
    };
    tokio::time::timeout(Duration::from_millis(TRANSFER_TIMEOUT_MS), send)
        .await
        .map_err(|_| anyhow::anyhow!("pushing {service} took over {TRANSFER_TIMEOUT_MS} ms"))?
        .map_err(|e| explain(&registry, e))?;
    // The registry's word for the digest, not ours: what a pull by digest will ask for.
    let digest = registry
        .client
        .fetch_manifest_digest(&reference, &registry.auth)
        .await
        .map_err(|e| explain(&registry, e))?;
    Ok(Pushed {
        service: service.to_string(),
        reference: reference.whole(),
        by_digest: format!("{}/{REPOSITORY_PREFIX}/{service}@{digest}", registry.host),
        digest,
    })
}

/// One line for the commonest failures: the name not resolving, the registry not running.
fn explain(registry: &Registry, error: oci_client::errors::OciDistributionError) -> anyhow::Error {
    let text = error.to_string();
    if text.contains("dns error") || text.contains("failed to lookup") {
        return fail(
            Code::Prerequisite,
            format!(
                "{} does not resolve: `paytool setup` adds the gateway's names to /etc/hosts ({text})",
                registry.host
            ),
        );
    }
    if text.contains("Connection refused") || text.contains("connect") {
        return fail(
            Code::NotRunning,
            format!(
                "the registry at {} does not answer: is the platform up (`paytool status`)? ({text})",
                registry.host
            ),
        );
    }
    anyhow::anyhow!("the registry at {}: {text}", registry.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small dynamically linked program of the system's (the test binary itself is hundreds
    /// of megabytes in a debug build: layering it twice took most of a minute).
    fn small_program() -> std::path::PathBuf {
        let program = std::path::PathBuf::from("/bin/true");
        assert!(program.is_file(), "coreutils' true is on every Debian");
        program
    }

    #[test]
    fn the_same_contents_make_the_same_layer_and_config() {
        let binary = small_program();
        let (first, files) = layer("probe", &binary).expect("a layer");
        let (second, _) = layer("probe", &binary).expect("a layer");
        assert_eq!(sha256(&first), sha256(&second));
        assert_eq!(
            sha256(&gzip(&first).expect("gzip")),
            sha256(&gzip(&second).expect("gzip"))
        );
        assert!(files.contains(&"/usr/local/bin/probe".to_string()));
        assert!(files.contains(&"/etc/passwd".to_string()));
        assert!(
            files.iter().any(|f| f.contains("libc.so")),
            "the C library the test binary links is in the layer: {files:?}"
        );
        let one = config("probe", "abc", &sha256(&first)).expect("config");
        let two = config("probe", "abc", &sha256(&first)).expect("config");
        assert_eq!(one, two);
        let parsed: serde_json::Value = serde_json::from_slice(&one).expect("JSON");
        assert_eq!(parsed["config"]["User"], format!("{UID}:{UID}"));
        assert_eq!(parsed["config"]["Labels"][REVISION_LABEL], "abc");
        assert_eq!(parsed["rootfs"]["diff_ids"][0], sha256(&first));
    }

    #[test]
    fn the_layer_unpacks_to_the_files_it_names_with_root_as_owner() {
        let binary = small_program();
        let (tar, files) = layer("probe", &binary).expect("a layer");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("an entry");
            let header = entry.header();
            assert_eq!(header.uid().expect("uid"), 0);
            assert_eq!(header.mtime().expect("mtime"), 0);
            if header.entry_type() == tar::EntryType::Regular {
                seen.push(format!("/{}", entry.path().expect("a path").display()));
            }
        }
        seen.sort();
        let mut named = files.clone();
        named.sort();
        assert_eq!(seen, named);
    }

    #[test]
    fn ldd_lines_give_the_libraries_and_the_loader_not_the_vdso() {
        let binary = std::env::current_exe().expect("the test binary");
        let found = libraries(&binary).expect("ldd");
        assert!(found.iter().all(|p| p.is_absolute()));
        assert!(found
            .iter()
            .any(|p| p.to_string_lossy().contains("ld-linux")));
        assert!(!found.iter().any(|p| p.to_string_lossy().contains("vdso")));
    }
}
