//! The CI server of local delivery (`paytool up --delivery`): Buildbot (a real CI server with
//! a web UI; Jenkins cannot be had here), its master (`ci`) and one worker (`ci-worker`), from
//! a venv that scripts/install-buildbot.sh makes. The gateway serves its web UI at
//! `https://ci.local.test`.
//!
//! Its configuration is generated at each start from one pipeline per service
//! (`services/NAME/ci.toml`): a builder that checks the commit out of the git server and runs
//! the pipeline's steps, each `paytool ci STEP SERVICE`, the very commands the Jenkinsfiles of
//! the kind runtime run. A push to the git server's `main` reaches the master through its change
//! hook (the repositories' post-receive hook, `components::git`), and builds each service whose
//! watched paths the push changed.

use super::{http_probe, render, run_to_log, Component, ComponentName, Ctx, Spec};
use crate::runtime::home::{derive, Home, Secrets};
use crate::runtime::probe::Probe;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

const TEMPLATE: &str = "stacks/local/ci/master.cfg.tera";
const MASTER_TAC: &str = "stacks/local/ci/master.tac";
const WORKER_TAC: &str = "stacks/local/ci/worker.tac.tera";
/// The one user of the CI server's web UI with the installation's credentials.
pub const USER: &str = "paytool";
/// The realm's client whose tokens the gateway takes for the CI server (audience `ci`).
pub const CLIENT: &str = "ci";
/// The user the git server's post-receive hook posts pushes as (the change hook's own).
pub const CHANGE_HOOK_USER: &str = "git";
/// The worker's name on the master.
pub const WORKER_NAME: &str = "paytool-worker";
/// The repository the pipelines build: the project, as `paytool git init` pushes it.
pub const REPOSITORY: &str = "paytool";
/// A step that prints nothing for this long is stuck (a Rust build of a service prints as it
/// goes); no step may run longer than the maximum.
const STEP_SILENCE_S: u64 = 900;
const STEP_MAX_S: u64 = 3_600;

super::engine_component!(
    family
    /// Buildbot's master and its worker.
    Ci { Ci, CiWorker }
);

fn dir(home: &Home, which: Ci) -> PathBuf {
    home.component_dir(which.name().as_str())
}

/// The web UI's password for `USER` (the gateway checks it), derived from the installation's
/// Keycloak admin password: nothing new is kept.
pub fn password(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "ci:paytool")
}

/// The secret of the realm's `ci` client.
pub fn client_secret(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "ci-client")
}

/// What the worker signs in to the master with.
fn worker_password(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "ci:worker")
}

/// What the git server's post-receive hook signs in to the change hook with.
pub fn change_hook_password(secrets: &Secrets) -> String {
    derive(&secrets.keycloak_admin, "ci:change-hook")
}

/// The master's web server on loopback (its REST API is under `/api/v2`).
pub fn url(home: &Home) -> String {
    format!("http://127.0.0.1:{}", home.ports().ci_web)
}

/// Where a push is posted (Buildbot's `base` change-hook dialect).
pub fn change_hook_url(home: &Home) -> String {
    format!("{}/change_hook/base", url(home))
}

/// One service's pipeline, as `services/NAME/ci.toml` says it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Pipeline {
    #[serde(default)]
    pub service: String,
    pub steps: Vec<Step>,
    pub watch: Vec<String>,
}

/// The steps a pipeline may have: each is `paytool ci STEP SERVICE`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Test,
    Build,
    Image,
    Push,
    Deploy,
}

impl Step {
    /// Its name: the `paytool ci` subcommand, the Jenkinsfile's stage and ci.toml's word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Test => "test",
            Step::Build => "build",
            Step::Image => "image",
            Step::Push => "push",
            Step::Deploy => "deploy",
        }
    }
}

/// The pipelines of the project's services that have one, in name order.
pub fn pipelines(project: &std::path::Path) -> anyhow::Result<Vec<Pipeline>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(project.join("services"))? {
        let dir = entry?.path();
        let path = dir.join("ci.toml");
        if !path.is_file() {
            continue;
        }
        let mut pipeline: Pipeline = toml::from_str(&std::fs::read_to_string(&path)?)
            .map_err(|e| anyhow::anyhow!("{} is not a pipeline: {e}", path.display()))?;
        pipeline.service = dir
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| anyhow::anyhow!("{} has no name", dir.display()))?
            .to_string();
        anyhow::ensure!(
            !pipeline.steps.is_empty() && !pipeline.watch.is_empty(),
            "{}: a pipeline has steps and paths to watch",
            path.display()
        );
        found.push(pipeline);
    }
    found.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(found)
}

fn probe(home: &Home, which: Ci) -> Probe {
    match which {
        // The REST API answers once the configuration is loaded and the database is up.
        Ci::Ci => http_probe(format!("{}/api/v2/builders", url(home))),
        // Ready when the master lists it as connected.
        Ci::CiWorker => Probe::HttpBody {
            url: format!(
                "{}/api/v2/workers/{WORKER_NAME}?field=connected_to",
                url(home)
            ),
            needle: "\"masterid\"".into(),
        },
    }
}

fn spec(ctx: &Ctx, which: Ci) -> anyhow::Result<Spec> {
    let home = &ctx.home;
    let ports = home.ports();
    let twistd = ctx.tools.buildbot.join("bin/twistd");
    // Each directory's buildbot.tac, as Buildbot's own tools expect it.
    let tac = "buildbot.tac";
    // In the foreground, its log on stdout (the supervisor keeps it), no pid file or state.
    let args = vec![
        "--nodaemon".into(),
        "--no_save".into(),
        "--pidfile=".into(),
        "--logfile=-".into(),
        format!("--python={tac}"),
    ];
    let (env, ports_used, urls) = match which {
        Ci::Ci => (
            Vec::new(),
            vec![("web", ports.ci_web), ("worker", ports.ci_worker)],
            vec![ports.public_url("ci"), url(home)],
        ),
        Ci::CiWorker => (worker_env(ctx), Vec::new(), Vec::new()),
    };
    Ok(Spec {
        name: which.name(),
        instance: 0,
        program: twistd,
        args,
        env,
        cwd: dir(home, which),
        run_as: None,
        ports: ports_used,
        urls,
        probe: probe(home, which),
        ready_timeout_ms: 60_000,
        // Twisted stops its services on SIGTERM; a build in flight is cut and reported so.
        stop_signal: nix::sys::signal::Signal::SIGTERM,
        stop_timeout_ms: 15_000,
    })
}

/// The steps' environment: git reaches the git server through the gateway like any clone (the
/// platform's CA, the name's address, paytool as the credential helper), paytool finds the
/// installation's checkout, and cargo keeps its builds in a cache of its own.
fn worker_env(ctx: &Ctx) -> Vec<(String, String)> {
    let home = &ctx.home;
    let ports = home.ports();
    let git_url = ports.public_url("git");
    let paytool = ctx.bin_dir.join("paytool");
    vec![
        (
            "GIT_SSL_CAINFO".into(),
            crate::runtime::tls::TlsFiles::of(home)
                .ca_cert
                .display()
                .to_string(),
        ),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_CONFIG_COUNT".into(), "2".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.curloptResolve".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("git.local.test:{}:127.0.0.1", ports.gateway_https),
        ),
        (
            "GIT_CONFIG_KEY_1".into(),
            format!("credential.{git_url}.helper"),
        ),
        (
            "GIT_CONFIG_VALUE_1".into(),
            super::git::credential_helper(home, &paytool, super::git::Credentials::Token),
        ),
        (
            "PAYTOOL_PROJECT_ROOT".into(),
            home.marker.project_root.display().to_string(),
        ),
        (
            "CARGO_TARGET_DIR".into(),
            target_dir().display().to_string(),
        ),
    ]
}

/// Where the worker's cargo builds: `PAYTOOL_CI_TARGET_DIR` when `paytool up` is given one
/// (a machine whose other builds should be reused), else a cache of its own that outlives
/// installations, so that a pipeline rebuilds only what a commit changed.
fn target_dir() -> PathBuf {
    std::env::var_os("PAYTOOL_CI_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::runtime::project::cache_dir().join("cargo-target-ci"))
}

async fn prepare(ctx: &Ctx, which: Ci) -> anyhow::Result<()> {
    let home = &ctx.home;
    let dir = dir(home, which);
    std::fs::create_dir_all(&dir)?;
    let ports = home.ports();
    let write = |name: &str, text: &str, mode: u32| {
        crate::runtime::home::write_atomic(&dir.join(name), text.as_bytes(), mode)
    };
    write("worker.password", &worker_password(&ctx.secrets), 0o600)?;
    match which {
        Ci::Ci => {
            let pipelines = pipelines(&ctx.project)?;
            let mut context = tera::Context::new();
            context.insert("pipelines_json", &serde_json::to_string(&pipelines)?);
            context.insert("paytool", &ctx.bin_dir.join("paytool"));
            context.insert("home", &home.dir);
            context.insert("worker_name", WORKER_NAME);
            context.insert("worker_port", &ports.ci_worker);
            context.insert("web_port", &ports.ci_web);
            context.insert("step_silence_s", &STEP_SILENCE_S);
            context.insert("step_max_s", &STEP_MAX_S);
            context.insert("public_url", &ports.public_url("ci"));
            context.insert("git_url", &ports.public_url("git"));
            context.insert("repository_url", &super::git::clone_url(home, REPOSITORY));
            // Through the gateway: the installation's user, and the realm's ci client.
            context.insert(
                "admins",
                &[USER.to_string(), format!("service-account-{CLIENT}")],
            );
            write("master.cfg", &render(ctx, TEMPLATE, &context)?, 0o644)?;
            write(
                "buildbot.tac",
                &std::fs::read_to_string(ctx.project.join(MASTER_TAC))?,
                0o644,
            )?;
            write(
                "change-hook.passwd",
                &format!(
                    "{CHANGE_HOOK_USER}:{}\n",
                    change_hook_password(&ctx.secrets)
                ),
                0o600,
            )?;
            // Makes the database the first time, migrates it after an upgrade, and checks the
            // configuration: a broken one is named here rather than by a master that exits.
            let mut upgrade = tokio::process::Command::new(ctx.tools.buildbot.join("bin/buildbot"));
            upgrade
                .args(["upgrade-master", "--quiet"])
                .arg(&dir)
                .current_dir(&dir);
            run_to_log(ctx, ComponentName::Ci, 0, &mut upgrade).await
        }
        Ci::CiWorker => {
            let mut context = tera::Context::new();
            context.insert("worker_name", WORKER_NAME);
            context.insert("worker_port", &ports.ci_worker);
            write("buildbot.tac", &render(ctx, WORKER_TAC, &context)?, 0o644)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_service_has_a_pipeline_that_watches_its_own_directory() {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the project");
        let found = pipelines(project).expect("the pipelines parse");
        let names: Vec<&str> = found.iter().map(|p| p.service.as_str()).collect();
        assert_eq!(names, ["consumer-api", "merchant-api", "orchestrator"]);
        for pipeline in &found {
            assert!(pipeline
                .watch
                .contains(&format!("services/{}/", pipeline.service)));
            assert_eq!(pipeline.steps.last(), Some(&Step::Deploy));
        }
    }

    #[test]
    fn each_services_jenkinsfile_has_its_pipelines_steps_in_order() {
        let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the project");
        for pipeline in pipelines(project).expect("the pipelines parse") {
            let jenkinsfile = std::fs::read_to_string(
                project
                    .join("services")
                    .join(&pipeline.service)
                    .join("Jenkinsfile"),
            )
            .expect("a Jenkinsfile beside ci.toml");
            let stages: Vec<&str> = jenkinsfile
                .split("stage('")
                .skip(1)
                .filter_map(|rest| rest.split('\'').next())
                .collect();
            let names: Vec<&str> = pipeline.steps.iter().map(|step| step.as_str()).collect();
            assert_eq!(stages, names, "{}", pipeline.service);
            for name in &names {
                assert!(
                    jenkinsfile.contains(&format!("paytool ci {name} {}", pipeline.service)),
                    "{}: stage {name} runs `paytool ci {name}`",
                    pipeline.service
                );
            }
        }
    }

    #[test]
    fn the_install_script_pins_the_version_setup_expects() {
        let script = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-buildbot.sh"),
        )
        .expect("the script");
        assert!(script.contains(&format!(
            "VERSION={}\n",
            crate::runtime::setup::BUILDBOT_VERSION
        )));
    }
}
