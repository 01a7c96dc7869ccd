//! The kind runtime's manifests and the Kubernetes API (docs/kubernetes.md): the stacks under
//! `stacks/kind/` and each service's `deploy/` (kustomize bases, overlays that only patch),
//! checked offline against the house rules (`paytool kube check`), and applied server-side to
//! a real API server (`paytool kube apply`), which `paytool kube serve` runs on this machine
//! from binaries built from source, since no cluster can run pods here.

pub mod apiserver;
pub mod apply;
pub mod kind;
pub mod policy;

use crate::args::KubeCommand;
use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where `scripts/install-crds.sh` leaves the CRDs it makes (one file per project).
pub fn crds_dir() -> PathBuf {
    crate::runtime::project::cache_dir().join("crds/out")
}

/// The CRD files, made by `scripts/install-crds.sh`; a missing one is a prerequisite.
pub fn crds() -> anyhow::Result<Vec<PathBuf>> {
    let dir = crds_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(fail(
            Code::Prerequisite,
            format!(
                "the CRDs the kind stacks use are not made in {}: run scripts/install-crds.sh (once; minutes)",
                dir.display()
            ),
        ));
    }
    Ok(files)
}

/// The stacks the kind runtime applies, in order (the CRDs before them: [`crds`]): every
/// Application's path of the app-of-apps by sync wave
/// (`stacks/kind/argocd/apps`, the one list of them), the local overlay of each scaffolded
/// service that has no Application there yet, by name, and last the Applications themselves
/// with their root.
pub fn stacks(project: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let apps: Vec<PathBuf> = kind::apps(project)?
        .into_iter()
        .map(|app| project.join(app.path))
        .collect();
    let mut scaffolded: Vec<PathBuf> = std::fs::read_dir(project.join("services"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("deploy/overlays/local"))
        .filter(|dir| dir.join("kustomization.yaml").is_file() && !apps.contains(dir))
        .collect();
    scaffolded.sort();
    out.extend(apps);
    out.extend(scaffolded);
    out.push(project.join(kind::APPS));
    out.push(project.join(kind::ROOT_APPLICATION));
    Ok(out)
}

/// The paths given, else every stack, with the CRDs first when they are to be applied (the
/// offline check has no use for them, and does not need them made).
fn paths_or_stacks(
    paths: Vec<PathBuf>,
    project: &Path,
    with_crds: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    if !paths.is_empty() {
        return Ok(paths);
    }
    let mut out = if with_crds { crds()? } else { Vec::new() };
    out.extend(stacks(project)?);
    Ok(out)
}

#[derive(Debug, Serialize)]
struct Checked {
    objects: usize,
    workloads: usize,
    violations: Vec<String>,
}

pub async fn run(project: &Path, command: KubeCommand) -> anyhow::Result<i32> {
    match command {
        KubeCommand::Serve { dir, port, json } => apiserver::serve(&dir, port, json).await,
        KubeCommand::Check { paths, json } => {
            let mut checked = Checked {
                objects: 0,
                workloads: 0,
                violations: Vec::new(),
            };
            for path in paths_or_stacks(paths, project, false)? {
                for manifest in apply::render(&path)? {
                    checked.objects += 1;
                    let found = policy::violations(&manifest);
                    if matches!(
                        manifest.kind(),
                        "Deployment" | "StatefulSet" | "DaemonSet" | "Rollout" | "Job" | "CronJob"
                    ) {
                        checked.workloads += 1;
                    }
                    checked.violations.extend(
                        found
                            .into_iter()
                            .map(|v| format!("{}: {v}", path.display())),
                    );
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&checked)?);
            } else {
                for violation in &checked.violations {
                    println!("{violation}");
                }
                println!(
                    "{} objects, {} workloads, {} violation(s)",
                    checked.objects,
                    checked.workloads,
                    checked.violations.len()
                );
            }
            Ok(if checked.violations.is_empty() {
                0
            } else {
                Code::Failed as i32
            })
        }
        KubeCommand::Apply {
            paths,
            kubeconfig,
            dry_run,
            json,
        } => {
            let kubeconfig = kubeconfig.ok_or_else(|| {
                fail(
                    Code::Usage,
                    "no kubeconfig: pass --kubeconfig (paytool kube serve prints its own) or set KUBECONFIG",
                )
            })?;
            let ui = Ui::new(json);
            let report = apply::run(
                &kubeconfig,
                &paths_or_stacks(paths, project, true)?,
                dry_run,
                &ui,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for outcome in &report.objects {
                    if let Some(message) = &outcome.message {
                        println!(
                            "refused: {} ({}): {message}",
                            outcome.object, outcome.source
                        );
                    }
                }
                println!(
                    "{} of {} objects {} on {} ({}) in {:.1} s",
                    report.applied,
                    report.objects.len(),
                    if dry_run { "accepted" } else { "applied" },
                    report.server,
                    report.server_version,
                    report.duration_ms as f64 / 1000.0
                );
            }
            Ok(if report.refused == 0 {
                0
            } else {
                Code::Failed as i32
            })
        }
    }
}
