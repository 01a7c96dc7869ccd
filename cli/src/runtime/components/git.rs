//! The git server of local delivery (`paytool up --delivery`): git's own smart-HTTP server
//! (`git http-backend`) and gitweb, both CGI programs, run by Debian's fcgiwrap on a Unix
//! socket and served by the gateway over TLS at `https://git.local.test`. Repositories are
//! bare, under the installation (`git/repositories/NAME.git`).
//!
//! As root, fcgiwrap and the programs it runs are the gateway's worker user (`www-data`), who
//! owns the repositories: the git server can write nothing else, and the workers can reach its
//! socket. A Unix socket rather than a port: fcgiwrap binds without SO_REUSEADDR, so a restart
//! within a minute of its last connection found its port taken (TIME_WAIT).
//!
//! Nothing is anonymous: the gateway lets a request through with the installation's git
//! credentials (Basic, user `paytool`) or with a token of the platform's realm meant for the
//! git server (audience `git`, from the realm's `git` client), as a bearer token or as the
//! Basic password. The name it authenticated is the request's `REMOTE_USER`, which is what
//! lets `git http-backend` take a push.

use super::{ComponentName, Ctx, Spec};
use crate::runtime::home::{derive, Home, Secrets};
use crate::runtime::probe::Probe;
use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::User;
use std::path::{Path, PathBuf};

/// The one user of an installation's git server (Basic credentials).
pub const USER: &str = "paytool";
/// The realm's client whose tokens the git server takes (their audience), made by `paytool up`.
pub const CLIENT: &str = "git";
/// The hook every repository gets: it tells the CI server of each push (`components::ci`).
const POST_RECEIVE: &str = "stacks/local/git/post-receive";
/// git's smart-HTTP server and gitweb, from Debian's git and gitweb packages.
pub const HTTP_BACKEND: &str = "/usr/lib/git-core/git-http-backend";
pub const GITWEB_DIR: &str = "/usr/share/gitweb";
/// fcgiwrap's children: each runs one CGI request at a time (a clone or push holds one for its
/// length), so this bounds the git server's concurrent requests; more wait in the socket's queue.
const CHILDREN: u8 = 4;

super::engine_component!(
    /// The git server's CGI runner.
    Git, Git, prepare = prepare
);

fn dir(home: &Home) -> PathBuf {
    home.component_dir(ComponentName::Git.as_str())
}

/// The user the git server runs as when paytool is root: the gateway's workers', so that they
/// can reach its socket.
const SYSTEM_USER: &str = "www-data";

/// Who runs the git server and owns its repositories (`None`: paytool's own user).
pub fn owner() -> Option<User> {
    if nix::unistd::Uid::effective().is_root() {
        User::from_name(SYSTEM_USER).ok().flatten()
    } else {
        None
    }
}

/// Hands `path` and everything under it to the git server's user (nothing to do unless root).
pub fn hand_over(path: &Path) -> anyhow::Result<()> {
    let mut pending = vec![path.to_path_buf()];
    while let Some(next) = pending.pop() {
        own(&next)?;
        if std::fs::symlink_metadata(&next)?.is_dir() {
            for entry in std::fs::read_dir(&next)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Hands `path` itself (not what is under it) to the git server's user.
fn own(path: &Path) -> anyhow::Result<()> {
    let Some(user) = owner() else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .with_context(|| format!("cannot hand {} to {SYSTEM_USER}", path.display()))
}

/// fcgiwrap's socket, which the gateway's git.local.test block passes requests to.
pub fn socket(home: &Home) -> PathBuf {
    dir(home).join("run/fcgiwrap.sock")
}

/// Where the bare repositories are (`GIT_PROJECT_ROOT` and gitweb's project root).
pub fn repositories(home: &Home) -> PathBuf {
    dir(home).join("repositories")
}

/// gitweb's configuration, written at each start.
pub fn gitweb_config(home: &Home) -> PathBuf {
    dir(home).join("gitweb.conf")
}

/// The git server's password, derived from the installation's Keycloak admin password: nothing
/// new is kept, and it says nothing of the admin's.
pub fn password(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "git:paytool")
}

/// The secret of the realm's `git` client, whose tokens (client credentials) the server takes.
pub fn client_secret(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "git-client")
}

/// Puts the project's post-receive hook in a bare repository (again at each start, so that a
/// changed hook reaches every repository), owned by the git server's user.
pub fn install_hook(project: &Path, bare: &Path) -> anyhow::Result<()> {
    let hooks = bare.join("hooks");
    std::fs::create_dir_all(&hooks)?;
    let text = std::fs::read(project.join(POST_RECEIVE))?;
    crate::runtime::home::write_atomic(&hooks.join("post-receive"), &text, 0o755)?;
    hand_over(&hooks)
}

/// Where the hook finds the CI server: its change hook on loopback and the hook's credentials,
/// readable by the git server's user only.
fn write_ci_hook_config(home: &Home, secrets: &Secrets) -> anyhow::Result<()> {
    let path = dir(home).join("ci-hook.json");
    let config = serde_json::json!({
        "url": super::ci::change_hook_url(home),
        "user": super::ci::CHANGE_HOOK_USER,
        "password": super::ci::change_hook_password(secrets),
        "repository_url": clone_url(home, "NAME"),
    });
    crate::runtime::home::write_atomic(&path, config.to_string().as_bytes(), 0o600)?;
    hand_over(&path)
}

/// A repository's clone URL through the gateway.
pub fn clone_url(home: &Home, repository: &str) -> String {
    format!("{}/{repository}.git", home.ports().public_url("git"))
}

/// Which credentials paytool's credential helper gives git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    /// A fresh access token of the realm's `git` client (Keycloak), as the Basic password.
    Token,
    /// The installation's own git user and password.
    Basic,
}

/// The credential-helper line git runs for this installation's git host (`credential.URL.helper`):
/// `paytool git credential` of this paytool and installation, answering with `credentials`. It names the checkout the installation belongs to: git runs the helper inside
/// a clone, which, being a clone of the project, would otherwise be taken for another checkout.
pub fn credential_helper(home: &Home, paytool: &Path, credentials: Credentials) -> String {
    let mode = match credentials {
        Credentials::Token => "token",
        Credentials::Basic => "basic",
    };
    format!(
        "!PAYTOOL_PROJECT_ROOT={} {} --home {} git credential --with {mode}",
        shell_quote(&home.marker.project_root.display().to_string()),
        shell_quote(&paytool.display().to_string()),
        shell_quote(&home.dir.display().to_string())
    )
}

/// A POSIX shell word: single quotes, with each single quote closed, escaped and reopened.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// A real CGI request through fcgiwrap: git's smart-HTTP server asked for the repository list's
/// root, which it answers (404, with headers) without touching a repository.
fn probe(home: &Home, _secrets: &Secrets) -> Probe {
    Probe::FastCgi {
        socket: socket(home),
        params: vec![
            ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
            ("REQUEST_METHOD".into(), "GET".into()),
            ("SCRIPT_FILENAME".into(), HTTP_BACKEND.into()),
            ("PATH_INFO".into(), "/".into()),
            ("QUERY_STRING".into(), String::new()),
            (
                "GIT_PROJECT_ROOT".into(),
                repositories(home).display().to_string(),
            ),
        ],
    }
}

fn spec(ctx: &Ctx) -> anyhow::Result<Spec> {
    Ok(Spec {
        name: ComponentName::Git,
        instance: 0,
        program: ctx.tools.fcgiwrap.clone(),
        args: vec![
            "-c".into(),
            CHILDREN.to_string(),
            "-s".into(),
            format!("unix:{}", socket(&ctx.home).display()),
        ],
        // The CGI programs run with fcgiwrap's environment plus the gateway's parameters:
        // git's hooks and gitweb find git on this PATH.
        env: vec![(
            "PATH".into(),
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
        )],
        cwd: dir(&ctx.home),
        run_as: owner().map(|user| user.name),
        ports: Vec::new(),
        urls: vec![ctx.home.ports().public_url("git")],
        probe: probe(&ctx.home, &ctx.secrets),
        ready_timeout_ms: 10_000,
        // fcgiwrap exits on SIGTERM; a clone or push in flight is cut, and the client retries.
        stop_signal: Signal::SIGTERM,
        stop_timeout_ms: 5_000,
    })
}

async fn prepare(ctx: &Ctx) -> anyhow::Result<()> {
    let run = dir(&ctx.home).join("run");
    std::fs::create_dir_all(&run)?;
    std::fs::create_dir_all(repositories(&ctx.home))?;
    // The previous fcgiwrap is stopped by now; its socket file would make the bind fail.
    match std::fs::remove_file(socket(&ctx.home)) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    write_ci_hook_config(&ctx.home, &ctx.secrets)?;
    for entry in std::fs::read_dir(repositories(&ctx.home))? {
        let bare = entry?.path();
        if bare.extension().is_some_and(|ext| ext == "git") && bare.join("HEAD").is_file() {
            install_hook(&ctx.project, &bare)?;
        }
    }
    // The directories only: a repository is its user's from the start (`paytool git init`
    // hands it over, pushes write as that user), so its files need no walk at every start.
    own(&run)?;
    own(&repositories(&ctx.home))?;
    let config = format!(
        "# Written by paytool up at each start of the git server.\n\
         our $projectroot = {root};\n\
         our $site_name = 'paytool git';\n\
         our $home_link_str = 'repositories';\n\
         our @git_base_url_list = ({base});\n\
         our @stylesheets = ('static/gitweb.css');\n\
         our $javascript = 'static/gitweb.js';\n\
         our $logo = 'static/git-logo.png';\n\
         our $favicon = 'static/git-favicon.png';\n\
         our $projects_list_description_width = 60;\n\
         $feature{{'highlight'}}{{'default'}} = [0];\n",
        root = perl_string(&repositories(&ctx.home).display().to_string()),
        base = perl_string(&ctx.home.ports().public_url("git")),
    );
    crate::runtime::home::write_atomic(&gitweb_config(&ctx.home), config.as_bytes(), 0o644)?;
    Ok(())
}

/// A Perl single-quoted string: only `\` and `'` are special in one.
fn perl_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_word_keeps_spaces_and_quotes_literal() {
        assert_eq!(shell_quote("/usr/bin/paytool"), "'/usr/bin/paytool'");
        assert_eq!(shell_quote("/tmp/it's here"), "'/tmp/it'\\''s here'");
    }

    #[test]
    fn a_perl_string_keeps_quotes_and_backslashes_literal() {
        assert_eq!(perl_string("/tmp/a"), "'/tmp/a'");
        assert_eq!(perl_string("it's"), "'it\\'s'");
        assert_eq!(perl_string("a\\b"), "'a\\\\b'");
    }

    #[test]
    fn the_password_and_client_secret_are_derived_distinct_and_stable() {
        let secrets = Secrets::generate();
        assert_eq!(password(&secrets), password(&secrets));
        assert_ne!(password(&secrets), client_secret(&secrets));
        assert_ne!(
            password(&secrets),
            super::super::registry::password(&secrets)
        );
        assert_ne!(password(&secrets), secrets.keycloak_admin);
    }
}
