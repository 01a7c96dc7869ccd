//! Local delivery: what takes a commit to a running service without a container daemon.
//! The images (`paytool images build|push`: OCI images of the services, pushed to the
//! installation's registry, `paytool up --delivery`) and the git server's clients
//! (`paytool git init|clone|credential`), and the steps of the CI server's pipelines
//! (`paytool ci test|build|image|push|deploy SERVICE`; docs/delivery.md).

pub mod ci;
pub mod git;
pub mod images;

use crate::args::{GitCommand, ImagesCommand};
use crate::runtime::components::{apps, services::Service};
use crate::runtime::home::Home;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;

/// `paytool images build|push`: for each service named (the platform's three by default), in
/// turn, a progress line each; the exit code of the first failure.
pub async fn run(home: &Home, command: ImagesCommand) -> anyhow::Result<i32> {
    let (services, json, push) = match command {
        ImagesCommand::Build { services, json } => (services, json, false),
        ImagesCommand::Push { services, json } => (services, json, true),
    };
    let services = resolve(home, services)?;
    let bin_dir = crate::runtime::project::bin_dir()?;
    let ui = Ui::new(json);
    let mut built = Vec::new();
    let mut pushed = Vec::new();
    for service in &services {
        let line = ui.step(service);
        let started = std::time::Instant::now();
        line.working("building");
        let image = match images::build(
            home,
            service,
            &bin_dir.join(service),
            &home.marker.project_root,
        ) {
            Ok(image) => image,
            Err(error) => {
                line.failed("failed");
                return Err(error);
            }
        };
        if push {
            line.working(&format!("pushing {} bytes", image.layer_bytes));
            match images::push(home, service).await {
                Ok(done) => {
                    line.done(&format!(
                        "{} in {:.1}s",
                        done.by_digest,
                        started.elapsed().as_secs_f64()
                    ));
                    pushed.push(done);
                }
                Err(error) => {
                    line.failed("failed");
                    return Err(error);
                }
            }
        } else {
            line.done(&format!(
                "{} ({} bytes, revision {}) in {:.1}s",
                image.digest,
                image.layer_bytes,
                image.revision,
                started.elapsed().as_secs_f64()
            ));
        }
        built.push(image);
    }
    if json {
        let out = if push {
            serde_json::to_string_pretty(&pushed)?
        } else {
            serde_json::to_string_pretty(&built)?
        };
        println!("{out}");
    }
    Ok(0)
}

/// The services named, or the platform's three: each a platform service or a scaffolded Rust
/// service of the installation (a Kotlin one's image is Jib's: `mvn jib:build` in its directory).
fn resolve(home: &Home, named: Vec<String>) -> anyhow::Result<Vec<String>> {
    if named.is_empty() {
        return Ok(Service::ALL
            .iter()
            .map(|s| s.component_name().as_str().to_string())
            .collect());
    }
    for name in &named {
        let platform = Service::ALL
            .iter()
            .any(|s| s.component_name().as_str() == name);
        let rust_app = home
            .marker
            .apps
            .iter()
            .any(|app| &app.name == name && app.language == apps::Language::Rust);
        if !platform && !rust_app {
            return Err(fail(
                Code::Usage,
                format!("{name} is not a service with an image here: orchestrator, consumer-api, merchant-api or a scaffolded Rust service (a Kotlin service's image comes from `mvn jib:build`)"),
            ));
        }
    }
    Ok(named)
}

/// `paytool git init|clone|credential`.
pub async fn run_git(
    home: &Home,
    project: &std::path::Path,
    command: GitCommand,
) -> anyhow::Result<i32> {
    match command {
        GitCommand::Init { repository, json } => {
            let ui = Ui::new(json);
            let line = ui.step(&format!("git push {repository}"));
            line.working("pushing the project's HEAD");
            let pushed = match git::init(home, project, &repository) {
                Ok(pushed) => pushed,
                Err(error) => {
                    line.failed("failed");
                    return Err(error);
                }
            };
            line.done(&format!(
                "{} {} at {} in {:.1}s",
                if pushed.created { "made, main" } else { "main" },
                &pushed.revision[..12.min(pushed.revision.len())],
                pushed.clone_url,
                pushed.elapsed_ms as f64 / 1000.0
            ));
            if json {
                println!("{}", serde_json::to_string_pretty(&pushed)?);
            }
            Ok(0)
        }
        GitCommand::Clone {
            dir,
            repository,
            credentials,
            json,
        } => {
            let ui = Ui::new(json);
            let line = ui.step(&format!("git clone {repository}"));
            line.working("cloning");
            let cloned = match git::clone(home, &repository, &dir, credentials) {
                Ok(cloned) => cloned,
                Err(error) => {
                    line.failed("failed");
                    return Err(error);
                }
            };
            line.done(&format!(
                "{} at {}",
                cloned.dir.display(),
                &cloned.revision[..12.min(cloned.revision.len())]
            ));
            if json {
                println!("{}", serde_json::to_string_pretty(&cloned)?);
            }
            Ok(0)
        }
        GitCommand::Credential {
            operation,
            credentials,
        } => {
            let stdin = std::io::stdin();
            if let Some(answer) =
                git::credential(home, &operation, credentials, stdin.lock()).await?
            {
                print!("{answer}");
            }
            Ok(0)
        }
    }
}
