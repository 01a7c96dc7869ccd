//! The installation's git server as its clients see it (`paytool git init|clone|credential`):
//! the project pushed to it, clones that trust the platform's CA and ask paytool for their
//! credentials, and git's credential-helper protocol answered with a token of the realm's `git`
//! client (or the installation's Basic credentials).
//!
//! The real git client does the work: what is tested is what a developer runs.

use crate::runtime::components::{git as server, keycloak};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use serde::Serialize;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The repository `paytool git init` makes and pushes the project to when none is named.
pub const DEFAULT_REPOSITORY: &str = "paytool";
/// The most lines, and bytes, a credential request may have (git sends a handful).
const CREDENTIAL_LINES_MAX: usize = 64;
const CREDENTIAL_BYTES_MAX: usize = 16 * 1024;
/// A transfer slower than this many bytes a second for `LOW_SPEED_TIME_S` is given up (git's
/// own bound: it has no overall timeout).
const LOW_SPEED_BYTES_PER_S: u32 = 1_000;
const LOW_SPEED_TIME_S: u32 = 30;
/// The most characters of a repository's name (it is a directory name and a URL path).
const REPOSITORY_NAME_MAX_CHARS: usize = 64;

pub use server::Credentials;

/// The git server of an installation, from a client's side.
pub struct Remote {
    /// `https://git.local.test:PORT`.
    pub url: String,
    /// `git.local.test:PORT`, what git names in a credential request.
    host: String,
    /// `git.local.test:PORT:127.0.0.1`: the name resolved without /etc/hosts.
    resolve: String,
    ca: PathBuf,
}

impl Remote {
    pub fn of(home: &Home) -> anyhow::Result<Self> {
        if !home.marker.delivery {
            return Err(fail(
                Code::Usage,
                "this installation has no git server: `paytool down`, then `paytool up --delivery`",
            ));
        }
        let ports = home.ports();
        let host = format!("git.local.test{}", ports.https_suffix());
        Ok(Self {
            url: ports.public_url("git"),
            resolve: format!("git.local.test:{}:127.0.0.1", ports.gateway_https),
            host,
            ca: crate::runtime::tls::TlsFiles::of(home).ca_cert,
        })
    }

    pub fn clone_url(&self, repository: &str) -> String {
        format!("{}/{repository}.git", self.url)
    }

    /// The settings a clone keeps (and every paytool git call passes): the platform's CA, the
    /// name's address, the helper that answers for credentials, and git's low-speed bound.
    fn settings(
        &self,
        home: &Home,
        credentials: Credentials,
    ) -> anyhow::Result<Vec<(String, String)>> {
        Ok(vec![
            ("http.sslCAInfo".into(), self.ca.display().to_string()),
            ("http.curloptResolve".into(), self.resolve.clone()),
            (
                "http.lowSpeedLimit".into(),
                LOW_SPEED_BYTES_PER_S.to_string(),
            ),
            ("http.lowSpeedTime".into(), LOW_SPEED_TIME_S.to_string()),
            (
                format!("credential.{}.helper", self.url),
                helper_command(home, credentials)?,
            ),
        ])
    }

    /// `git` with these settings, never prompting on a terminal. `GIT_SSL_CAINFO` is set too: a
    /// machine-wide one in the environment would win over `http.sslCAInfo`.
    fn git(&self, home: &Home, credentials: Credentials) -> anyhow::Result<Command> {
        let mut command = Command::new("git");
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", &self.ca)
            .stdin(std::process::Stdio::null());
        for (name, value) in self.settings(home, credentials)? {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        Ok(command)
    }
}

/// The credential helper line git runs: this paytool, this installation.
fn helper_command(home: &Home, credentials: Credentials) -> anyhow::Result<String> {
    Ok(server::credential_helper(
        home,
        &std::env::current_exe()?,
        credentials,
    ))
}

fn check_name(repository: &str) -> anyhow::Result<()> {
    let good = !repository.is_empty()
        && repository.len() <= REPOSITORY_NAME_MAX_CHARS
        && !repository.starts_with('.')
        && repository
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if good {
        Ok(())
    } else {
        Err(fail(
            Code::Usage,
            format!("{repository:?} is not a repository name: letters, digits, '-', '_' and '.', not first, at most {REPOSITORY_NAME_MAX_CHARS}"),
        ))
    }
}

/// Runs a git command; its stderr is the error when it fails.
fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command.output().map_err(|e| {
        fail(
            Code::Prerequisite,
            format!("git could not be run ({e}): `paytool setup` installs it"),
        )
    })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr.trim();
    let code = if detail.contains("Authentication failed") || detail.contains("401") {
        Code::Unauthorized
    } else if detail.contains("Could not resolve") || detail.contains("Failed to connect") {
        Code::NotRunning
    } else {
        Code::Failed
    };
    Err(fail(code, format!("{what} failed: {detail}")))
}

#[derive(Debug, Serialize)]
pub struct Pushed {
    pub repository: String,
    pub clone_url: String,
    /// Whether the repository was made by this call.
    pub created: bool,
    /// The commit the server's `main` now has.
    pub revision: String,
    pub elapsed_ms: u64,
}

/// `paytool git init`: makes the bare repository on the server (an administrator's act, done
/// on this machine's disk) unless it exists, then pushes the project's HEAD to its `main`
/// over HTTPS, through the gateway, like any client.
pub fn init(home: &Home, project: &Path, repository: &str) -> anyhow::Result<Pushed> {
    check_name(repository)?;
    let remote = Remote::of(home)?;
    crate::runtime::state::require_running(home)?;
    let started = Instant::now();
    let bare = server::repositories(home).join(format!("{repository}.git"));
    let created = !bare.join("HEAD").is_file();
    if created {
        std::fs::create_dir_all(server::repositories(home))?;
        run(
            Command::new("git")
                .args(["init", "--quiet", "--bare", "--initial-branch=main"])
                .arg(&bare),
            "git init --bare",
        )?;
        std::fs::write(
            bare.join("description"),
            "The barcode payments platform: services, paytool, stacks.\n",
        )?;
        server::install_hook(&home.marker.project_root, &bare)?;
        // Made by root: the server (its own user) must be able to write to it.
        server::hand_over(&bare)?;
    }
    let revision = run(
        Command::new("git")
            .arg("-C")
            .arg(project)
            .args(["rev-parse", "HEAD"]),
        "reading the project's HEAD",
    )?;
    run(
        remote
            .git(home, Credentials::Token)?
            .arg("-C")
            .arg(project)
            .args(["push", "--quiet"])
            .arg(remote.clone_url(repository))
            .arg("HEAD:refs/heads/main"),
        "git push",
    )?;
    Ok(Pushed {
        repository: repository.to_string(),
        clone_url: remote.clone_url(repository),
        created,
        revision,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[derive(Debug, Serialize)]
pub struct Cloned {
    pub repository: String,
    pub clone_url: String,
    pub dir: PathBuf,
    pub revision: String,
    pub credentials: Credentials,
}

/// `paytool git clone`: a clone that keeps the settings (CA, address, credential helper), so
/// that `git pull` and `git push` in it need nothing more.
pub fn clone(
    home: &Home,
    repository: &str,
    dir: &Path,
    credentials: Credentials,
) -> anyhow::Result<Cloned> {
    check_name(repository)?;
    let remote = Remote::of(home)?;
    crate::runtime::state::require_running(home)?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(fail(
            Code::Usage,
            format!(
                "{} exists and is not empty: name another directory",
                dir.display()
            ),
        ));
    }
    run(
        remote
            .git(home, credentials)?
            .args(["clone", "--quiet"])
            .arg(remote.clone_url(repository))
            .arg(dir),
        "git clone",
    )?;
    for (name, value) in remote.settings(home, credentials)? {
        run(
            Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["config", &name, &value]),
            "git config",
        )?;
    }
    let revision = run(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "HEAD"]),
        "reading the clone's HEAD",
    )?;
    Ok(Cloned {
        repository: repository.to_string(),
        clone_url: remote.clone_url(repository),
        dir: std::path::absolute(dir)?,
        revision,
        credentials,
    })
}

/// `paytool git credential get|store|erase`: git's credential-helper protocol. For `get` about
/// this installation's git server, answers a user name and password; says nothing for any
/// other host (git then asks its other helpers), and keeps nothing on `store` or `erase`.
pub async fn credential(
    home: &Home,
    operation: &str,
    credentials: Credentials,
    input: impl BufRead,
) -> anyhow::Result<Option<String>> {
    let request = read_request(input)?;
    if operation != "get" {
        return Ok(None);
    }
    let remote = Remote::of(home)?;
    let asks_for_ours = request.get("protocol").map(String::as_str) == Some("https")
        && request.get("host") == Some(&remote.host);
    if !asks_for_ours {
        return Ok(None);
    }
    let secrets = home.secrets()?;
    let (user, password) = match credentials {
        Credentials::Basic => (server::USER.to_string(), server::password(&secrets)),
        Credentials::Token => {
            let http = crate::runtime::probe::http_client(None, None)?;
            let token = keycloak::client_token(
                &http,
                home,
                server::CLIENT,
                &server::client_secret(&secrets),
            )
            .await?;
            (server::CLIENT.to_string(), token)
        }
    };
    Ok(Some(format!("username={user}\npassword={password}\n")))
}

/// A credential request: `key=value` lines up to a blank line or the end, bounded.
fn read_request(input: impl BufRead) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut request = std::collections::BTreeMap::new();
    let mut bytes = 0;
    for (count, line) in input.lines().enumerate() {
        let line = line?;
        bytes += line.len() + 1;
        anyhow::ensure!(
            count < CREDENTIAL_LINES_MAX && bytes <= CREDENTIAL_BYTES_MAX,
            "the credential request is longer than {CREDENTIAL_LINES_MAX} lines or {CREDENTIAL_BYTES_MAX} bytes"
        );
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            request.insert(key.to_string(), value.to_string());
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_name_is_a_plain_directory_name() {
        for good in ["paytool", "loyalty-api", "a_b.c", "x1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "../up", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_credential_request_is_read_to_its_blank_line_and_bounded() {
        let request =
            read_request("protocol=https\nhost=git.local.test:8443\n\nignored=yes\n".as_bytes())
                .expect("read");
        assert_eq!(request.get("protocol").map(String::as_str), Some("https"));
        assert_eq!(
            request.get("host").map(String::as_str),
            Some("git.local.test:8443")
        );
        assert!(!request.contains_key("ignored"));
        let long = "a=b\n".repeat(CREDENTIAL_LINES_MAX + 1);
        assert!(read_request(long.as_bytes()).is_err());
    }
}
