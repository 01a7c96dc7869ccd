//! `paytool ci STEP SERVICE`: the steps of a service's pipeline (`services/NAME/ci.toml`), run
//! in a checkout of the commit. Buildbot's builders run them on the local runtime, the
//! Jenkinsfiles on the kind runtime: the same commands in both, and a developer can run any of
//! them by hand in a clone.
//!
//! - `test`: the service's tests (`cargo test -p NAME`) against the installation's PostgreSQL
//!   and Kafka, as `scripts/test.sh` runs them;
//! - `build`: its binary (`cargo build -p NAME`), with the commit as `PAYTOOL_REVISION`, which
//!   the service then reports in `/health/live` and `/health/ready`;
//! - `image`: its OCI image from that binary, labelled with the commit;
//! - `push`: the image to the installation's registry;
//! - `deploy`: a rolling restart of the running service onto that binary (`paytool rollout`).

use crate::runtime::components::ci::Step;
use crate::runtime::components::ComponentName;
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The most a cargo step may take (a cold build of a service and its dependencies on two
/// cores is about ten minutes; its tests about as long again).
const CARGO_TIMEOUT_MS: u64 = 45 * 60 * 1000;

/// One step's outcome, for `--json`.
#[derive(Debug, Serialize)]
pub struct Ran {
    pub step: Step,
    pub service: String,
    pub revision: String,
    pub elapsed_ms: u64,
    /// What the step made: the binary, the image's digest, the image by digest, the rollout's
    /// outcome.
    pub made: Option<String>,
}

/// The checkout a step works in: the directory given, or the working directory.
fn checkout(source: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match source {
        Some(dir) => dir,
        None => std::env::current_dir()?,
    };
    let dir = std::path::absolute(&dir)?;
    if !dir.join("Cargo.toml").is_file() {
        return Err(fail(
            Code::Usage,
            format!(
                "{} is not a checkout of the project (no Cargo.toml): run in one, or pass --source DIR",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// Where cargo puts what it builds for this checkout: `CARGO_TARGET_DIR` (the CI worker sets a
/// cache of its own), else the checkout's `target/`.
fn target_dir(source: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| source.join("target"))
}

/// Runs cargo in the checkout, its output passed through (Buildbot shows it), within
/// `CARGO_TIMEOUT_MS`.
async fn cargo(source: &Path, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<()> {
    let mut command = tokio::process::Command::new("cargo");
    command
        .args(args)
        .current_dir(source)
        // The checked-in query data: no database is needed to compile.
        .env("SQLX_OFFLINE", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let status = tokio::time::timeout(Duration::from_millis(CARGO_TIMEOUT_MS), command.status())
        .await
        .map_err(|_| {
            fail(
                Code::Failed,
                format!(
                    "cargo {} ran past {} min",
                    args.join(" "),
                    CARGO_TIMEOUT_MS / 60_000
                ),
            )
        })?
        .map_err(|e| fail(Code::Prerequisite, format!("cargo could not be run: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(
            Code::Failed,
            format!("cargo {} failed ({status})", args.join(" ")),
        ))
    }
}

/// Runs one step of `service`'s pipeline in the checkout `source`.
pub async fn run(
    home: &Home,
    step: Step,
    service: &str,
    source: Option<PathBuf>,
    ui: &Ui,
) -> anyhow::Result<Ran> {
    let source = checkout(source)?;
    let pipelines = crate::runtime::components::ci::pipelines(&source)?;
    if !pipelines.iter().any(|p| p.service == service) {
        let known: Vec<&str> = pipelines.iter().map(|p| p.service.as_str()).collect();
        return Err(fail(
            Code::Usage,
            format!(
                "{service} has no pipeline in {} (services/{service}/ci.toml): one of {}",
                source.display(),
                known.join(", ")
            ),
        ));
    }
    let revision = crate::delivery::images::revision(&source)?;
    let binary = target_dir(&source).join("debug").join(service);
    let started = Instant::now();
    let line = ui.step(&format!("ci {} {service}", step.as_str()));
    let made = match step {
        Step::Test => {
            line.working("cargo test");
            let status = crate::runtime::status::collect(home, true).await?;
            let status_file = target_dir(&source).join(format!("paytool-ci-status-{service}.json"));
            std::fs::create_dir_all(target_dir(&source))?;
            crate::runtime::home::write_atomic(
                &status_file,
                serde_json::to_string(&status)?.as_bytes(),
                0o600,
            )?;
            cargo(
                &source,
                &["test", "-p", service],
                &[
                    ("PAYTOOL_TEST_STATUS", status_file.display().to_string()),
                    (
                        "PAYTOOL_TEST_DATABASE_URL",
                        status.connections.postgres_admin_url.clone(),
                    ),
                ],
            )
            .await?;
            None
        }
        Step::Build => {
            line.working("cargo build");
            cargo(
                &source,
                &["build", "-p", service, "--bin", service],
                &[("PAYTOOL_REVISION", revision.clone())],
            )
            .await?;
            Some(binary.display().to_string())
        }
        Step::Image => {
            line.working("building the image");
            let built = crate::delivery::images::build(home, service, &binary, &source)?;
            Some(built.digest)
        }
        Step::Push => {
            line.working("pushing the image");
            let pushed = crate::delivery::images::push(home, service).await?;
            Some(pushed.by_digest)
        }
        Step::Deploy => {
            line.working("rolling out");
            let name: ComponentName = service.parse()?;
            if name.instances(home) < 2 {
                line.failed("one instance");
                return Err(fail(
                    Code::Refused,
                    format!("{service} runs one instance, and a rollout without downtime needs two: `paytool up --replicas {service}=2` (or --replicas 2 for every service)"),
                ));
            }
            let request = crate::runtime::rollout::Request {
                service: name,
                max_unavailable: 1,
                binary: Some(binary.clone()),
            };
            let quiet = Ui::new(true);
            let code = crate::runtime::rollout::run(home, request, false, &quiet).await?;
            if code != 0 {
                line.failed("rolled back");
                return Err(fail(
                    Code::Failed,
                    format!("the rollout of {service} at {revision} did not complete (exit {code}): `paytool logs {service}` says why"),
                ));
            }
            Some(format!("{service} at {revision}"))
        }
    };
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    line.done(&format!(
        "{} in {:.1}s",
        made.as_deref().unwrap_or("passed"),
        elapsed_ms as f64 / 1000.0
    ));
    Ok(Ran {
        step,
        service: service.to_string(),
        revision,
        elapsed_ms,
        made,
    })
}
