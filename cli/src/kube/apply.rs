//! `paytool kube apply`: render stacks (kustomize directories or YAML files) and apply every
//! object to an API server server-side, the way Argo CD and `kubectl apply --server-side` do.
//!
//! Order: Namespaces and CustomResourceDefinitions first, for real (a namespaced object cannot
//! be dry-run into a namespace that does not exist, nor a custom resource before its CRD is
//! established); then every other object as a server-side dry run, so that one refused object
//! stops the run before anything else changes; then for real. A refusal names the object, the
//! file it came from and the server's own message.

use crate::support::exit::{fail, Code};
use crate::support::ui::Ui;
use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{GroupVersionKind, TypeMeta};
use kube::discovery::{Discovery, Scope};
use kube::Client;
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The field manager the server records for what paytool applied.
const FIELD_MANAGER: &str = "paytool";
/// Rendering one kustomize directory (kubectl's built-in kustomize).
const RENDER_TIMEOUT_MS: u64 = 60_000;
/// A CRD is usually established within a second; a loaded machine may take longer.
const ESTABLISHED_TIMEOUT_MS: u64 = 30_000;
const ESTABLISHED_POLL_MS: u64 = 200;
/// The most objects one run applies: a bound on a runaway render.
pub const OBJECTS_MAX: usize = 5_000;

/// One object of a rendered stack, and where it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }

    /// `Kind namespace/name` (or `Kind name` for a cluster-wide object), as people say it.
    pub fn id(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    /// Applied before the rest, for real.
    fn is_prerequisite(&self) -> bool {
        matches!(self.kind(), "Namespace" | "CustomResourceDefinition")
    }
}

/// Every object of a multi-document YAML text (empty documents skipped).
pub fn parse(text: &str, source: &str) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .with_context(|| format!("{source}: not YAML"))?;
        if value.is_null() {
            continue;
        }
        anyhow::ensure!(
            value["apiVersion"].is_string()
                && value["kind"].is_string()
                && value["metadata"]["name"].is_string(),
            "{source}: an object without apiVersion, kind or metadata.name"
        );
        out.push(Manifest {
            source: source.to_string(),
            object: value,
        });
    }
    Ok(out)
}

/// A kustomize directory rendered with `kubectl kustomize`, or a YAML file read.
pub fn render(path: &Path) -> anyhow::Result<Vec<Manifest>> {
    let source = path.display().to_string();
    if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {source}"))?;
        return parse(&text, &source);
    }
    if !path.join("kustomization.yaml").is_file() {
        return Err(fail(
            Code::Usage,
            format!("{source} is neither a YAML file nor a kustomize directory"),
        ));
    }
    let mut child = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|_| {
            fail(
                Code::Prerequisite,
                "kubectl (with kustomize built in) is missing: install kubectl to render stacks",
            )
        })?;
    // Both pipes are read while kubectl runs: a render larger than the pipe's buffer (64 KiB;
    // the observability stack with its dashboards is) would otherwise block kubectl on its
    // write and be taken for a render that never ends.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let Some(status) = crate::support::child::wait_bounded(&mut child, RENDER_TIMEOUT_MS)? else {
        anyhow::bail!(
            "{source}: kustomize ran past {} s",
            RENDER_TIMEOUT_MS / 1000
        );
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(fail(
            Code::Failed,
            format!(
                "{source} does not render: {}",
                String::from_utf8_lossy(&stderr).trim()
            ),
        ));
    }
    parse(&String::from_utf8(stdout)?, &source)
}

/// What happened to one object.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub object: String,
    pub source: String,
    /// `applied`, `dry-run` (accepted by the server's dry run, not written), or `refused`.
    pub result: Disposition,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    Applied,
    DryRun,
    Refused,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub server: String,
    pub server_version: String,
    pub objects: Vec<Outcome>,
    pub applied: usize,
    pub refused: usize,
    pub duration_ms: u64,
}

/// A client for the kubeconfig's current context.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<(Client, String)> {
    // kube's TLS asks rustls for the process's provider; with both ring (reqwest 0.12, kube)
    // and aws-lc (oci-client's reqwest) compiled in, none is chosen unless one is installed.
    // A second call finds it installed: nothing to do.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| {
        fail(
            Code::Usage,
            format!(
                "the kubeconfig {} cannot be read: {e}",
                kubeconfig.display()
            ),
        )
    })?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await?;
    let server = config.cluster_url.to_string();
    Ok((Client::try_from(config)?, server))
}

fn gvk(manifest: &Manifest) -> anyhow::Result<GroupVersionKind> {
    let types = TypeMeta {
        api_version: manifest.object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        kind: manifest.kind().to_string(),
    };
    Ok(GroupVersionKind::try_from(&types)?)
}

/// Server-side apply of one object (a dry run when `dry_run`): None when accepted, else the
/// server's message.
async fn apply_one(
    client: &Client,
    discovery: &Discovery,
    manifest: &Manifest,
    dry_run: bool,
) -> Option<String> {
    let gvk = match gvk(manifest) {
        Ok(gvk) => gvk,
        Err(error) => return Some(error.to_string()),
    };
    let Some((resource, capabilities)) = discovery.resolve_gvk(&gvk) else {
        return Some(format!(
            "the server has no kind {} in {}/{} (is its CRD applied?)",
            gvk.kind, gvk.group, gvk.version
        ));
    };
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            manifest.namespace().unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply(FIELD_MANAGER).force();
    params.dry_run = dry_run;
    match api
        .patch(manifest.name(), &params, &Patch::Apply(&manifest.object))
        .await
    {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => Some(status.message.clone()),
        Err(error) => Some(error.to_string()),
    }
}

/// Waits until every named CRD reports Established (bounded).
async fn established(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
    let resource = kube::api::ApiResource::from_gvk(&gvk);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let deadline = Instant::now() + Duration::from_millis(ESTABLISHED_TIMEOUT_MS);
    for name in names {
        loop {
            let crd = api.get(name).await?;
            let ok = crd.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if ok {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the CRD {name} was not established within {} s",
                ESTABLISHED_TIMEOUT_MS / 1000
            );
            tokio::time::sleep(Duration::from_millis(ESTABLISHED_POLL_MS)).await;
        }
    }
    Ok(())
}

/// Renders `paths` and applies every object to the kubeconfig's server. With `dry_run`, only
/// Namespaces and CRDs are written; everything else is the server's dry run.
pub async fn run(
    kubeconfig: &Path,
    paths: &[PathBuf],
    dry_run: bool,
    ui: &Ui,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut manifests = Vec::new();
    for path in paths {
        // kustomize runs as a child process: off the async workers.
        let owned = path.clone();
        manifests.extend(tokio::task::spawn_blocking(move || render(&owned)).await??);
        anyhow::ensure!(
            manifests.len() <= OBJECTS_MAX,
            "more than {OBJECTS_MAX} objects: is a path wrong?"
        );
    }
    let (client, server) = client(kubeconfig).await?;
    let version = client.apiserver_version().await.map_err(|e| {
        fail(
            Code::NotRunning,
            format!("the API server at {server} does not answer ({e}): start it with `paytool kube serve`"),
        )
    })?;
    let (first, rest): (Vec<&Manifest>, Vec<&Manifest>) =
        manifests.iter().partition(|m| m.is_prerequisite());
    let mut outcomes = Vec::new();
    let record = |manifest: &Manifest, result: Disposition, message: Option<String>| Outcome {
        object: manifest.id(),
        source: manifest.source.clone(),
        result,
        message,
    };

    let line = ui.step("prerequisites");
    line.working(&format!("{} namespaces and CRDs", first.len()));
    let mut discovery = Discovery::new(client.clone()).run().await?;
    let mut crds = Vec::new();
    for manifest in &first {
        let refused = apply_one(&client, &discovery, manifest, false).await;
        if refused.is_none() && manifest.kind() == "CustomResourceDefinition" {
            crds.push(manifest.name().to_string());
        }
        outcomes.push(match refused {
            None => record(manifest, Disposition::Applied, None),
            Some(message) => record(manifest, Disposition::Refused, Some(message)),
        });
    }
    if !crds.is_empty() {
        established(&client, &crds).await?;
        // The new kinds are served now: discovery must see them.
        discovery = Discovery::new(client.clone()).run().await?;
    }
    line.done(&format!("{} applied", first.len()));

    let line = ui.step("dry run");
    line.working(&format!("{} objects", rest.len()));
    let mut refused = 0;
    for manifest in &rest {
        if let Some(message) = apply_one(&client, &discovery, manifest, true).await {
            refused += 1;
            outcomes.push(record(manifest, Disposition::Refused, Some(message)));
        }
    }
    let refused_first = outcomes
        .iter()
        .filter(|o| o.result == Disposition::Refused)
        .count();
    if refused > 0 || refused_first > 0 {
        line.failed(&format!(
            "{} refused; nothing else applied",
            refused + refused_first
        ));
    } else {
        line.done(&format!("{} accepted", rest.len()));
        let line = ui.step("apply");
        for manifest in &rest {
            if dry_run {
                outcomes.push(record(manifest, Disposition::DryRun, None));
                continue;
            }
            line.working(&manifest.id());
            outcomes.push(
                match apply_one(&client, &discovery, manifest, false).await {
                    None => record(manifest, Disposition::Applied, None),
                    Some(message) => record(manifest, Disposition::Refused, Some(message)),
                },
            );
        }
        if dry_run {
            line.done("server dry run only (--dry-run)");
        } else {
            line.done(&format!("{} applied", rest.len()));
        }
    }
    let applied = outcomes
        .iter()
        .filter(|o| o.result != Disposition::Refused)
        .count();
    let refused = outcomes.len() - applied;
    Ok(Report {
        server,
        server_version: version.git_version,
        objects: outcomes,
        applied,
        refused,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_parsed_in_order_and_empty_ones_skipped() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: payments\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orchestrator\n  namespace: payments\n";
        let manifests = parse(text, "t.yaml").expect("parsed");
        let ids: Vec<String> = manifests.iter().map(Manifest::id).collect();
        assert_eq!(
            ids,
            ["Namespace payments", "Deployment payments/orchestrator"]
        );
        assert!(manifests[0].is_prerequisite());
        assert!(!manifests[1].is_prerequisite());
    }

    #[test]
    fn an_object_without_a_name_is_refused_naming_its_file() {
        let error = parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            "bad.yaml",
        )
        .expect_err("no name");
        assert!(error.to_string().contains("bad.yaml"), "{error}");
    }

    #[test]
    fn a_core_kind_has_the_empty_group() {
        let manifest = &parse(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n",
            "s.yaml",
        )
        .expect("parsed")[0];
        let gvk = gvk(manifest).expect("gvk");
        assert_eq!((gvk.group.as_str(), gvk.version.as_str()), ("", "v1"));
    }
}
