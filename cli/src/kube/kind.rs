//! `paytool up --runtime kind`: the platform on a kind cluster, installed by Argo CD from Git.
//! What a run would do is data (the plan), made from the repository itself: the cluster's
//! configuration, the images, the bootstrap applied directly, then the Applications of the
//! app-of-apps in the order of their sync waves, each stack rendered. `--dry-run` prints it,
//! and the rendered manifests, without a cluster; that is all this machine can do (no node
//! image can be pulled here), so a run without `--dry-run` checks for kind and a container
//! engine and says what is missing.

use super::apply::{render, Manifest};
use crate::support::exit::{fail, Code};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The stacks applied directly, before Argo CD takes over (the root syncs the rest).
pub const ROOT_APPLICATION: &str = "stacks/kind/argocd/root.yaml";
pub const APPS: &str = "stacks/kind/argocd/apps";
const CLUSTER_CONFIG: &str = "stacks/kind/cluster/kind.yaml";
const REGISTRY_HOSTS: &str = "stacks/kind/cluster/registry-hosts.toml";
const WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// How long each wave may take to be synced and healthy before the run stops and diagnoses.
pub const WAVE_TIMEOUT_S: u32 = 300;

/// One Application of the app-of-apps: what it syncs, where, and when.
#[derive(Debug, Clone, Serialize)]
pub struct App {
    pub name: String,
    pub path: String,
    pub namespace: String,
    pub wave: i32,
    pub objects: usize,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub n: usize,
    pub name: String,
    pub action: String,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub apps: Vec<App>,
    pub objects: usize,
}

/// The Applications the root syncs, in wave order (then by name, as Argo CD orders them).
pub fn apps(project: &Path) -> anyhow::Result<Vec<App>> {
    let mut out = Vec::new();
    for manifest in render(&project.join(APPS))? {
        anyhow::ensure!(
            manifest.kind() == "Application",
            "{APPS} holds {}: only Applications belong there",
            manifest.id()
        );
        let spec = &manifest.object["spec"];
        let path = spec["source"]["path"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{}: no source.path", manifest.id()))?
            .to_string();
        let wave = match manifest.object["metadata"]["annotations"][WAVE_ANNOTATION].as_str() {
            Some(text) => text
                .parse()
                .map_err(|_| anyhow::anyhow!("{}: sync wave {text:?}", manifest.id()))?,
            None => 0,
        };
        let objects = render(&project.join(&path))?.len();
        out.push(App {
            name: manifest.name().to_string(),
            namespace: spec["destination"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            path,
            wave,
            objects,
        });
    }
    out.sort_by(|a, b| (a.wave, &a.name).cmp(&(b.wave, &b.name)));
    Ok(out)
}

/// Every wave, in order, with its Applications' names.
fn waves(apps: &[App]) -> Vec<(i32, Vec<&str>)> {
    let mut out: Vec<(i32, Vec<&str>)> = Vec::new();
    for app in apps {
        match out.last_mut() {
            Some((wave, names)) if *wave == app.wave => names.push(&app.name),
            _ => out.push((app.wave, vec![&app.name])),
        }
    }
    out
}

pub fn plan(project: &Path) -> anyhow::Result<Plan> {
    let apps = apps(project)?;
    let services: Vec<&str> = apps
        .iter()
        .filter(|a| a.path.starts_with("services/"))
        .map(|a| a.name.as_str())
        .collect();
    let mut steps = vec![
        (
            "cluster",
            format!(
                "kind create cluster --config {CLUSTER_CONFIG}: one node, 80 and 443 on 127.0.0.1, containerd trusting the platform's CA for registry.local.test ({REGISTRY_HOSTS})"
            ),
        ),
        (
            "certificate",
            "paytool tls: the *.local.test certificate as the Secret local-test-tls of each namespace with an Ingress".to_string(),
        ),
        (
            "images",
            format!(
                "paytool images build, then kind load: registry.local.test/paytool/{{{}}} at the checkout's revision",
                services.join(",")
            ),
        ),
        (
            "bootstrap",
            "server-side apply of the namespaces, Argo CD's install (not in the stacks yet: docs/kubernetes.md), then the root Application".to_string(),
        ),
        (
            "secrets",
            "the secret store's one Secret (paytool-secrets/paytool) from this installation's own secrets, never from Git".to_string(),
        ),
        (
            "git",
            format!("push this checkout's HEAD to the in-cluster git server; the root syncs {APPS}"),
        ),
    ];
    for (wave, names) in waves(&apps) {
        steps.push((
            "wave",
            format!(
                "wave {wave}: {} synced and healthy within {WAVE_TIMEOUT_S} s, else stop with the events and image-pull errors of what is not",
                names.join(", ")
            ),
        ));
    }
    let objects = apps.iter().map(|a| a.objects).sum();
    Ok(Plan {
        steps: steps
            .into_iter()
            .enumerate()
            .map(|(i, (name, action))| Step {
                n: i + 1,
                name: name.to_string(),
                action,
            })
            .collect(),
        apps,
        objects,
    })
}

/// The rendered manifests, each stack headed by where it came from: the root Application, then
/// every Application's stack in wave order.
pub fn rendered(project: &Path, plan: &Plan) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut add = |source: &str, manifests: Vec<Manifest>| -> anyhow::Result<()> {
        for manifest in manifests {
            out.push_str(&format!("---\n# Source: {source}\n"));
            out.push_str(&serde_yaml::to_string(&manifest.object)?);
        }
        Ok(())
    };
    add(ROOT_APPLICATION, render(&project.join(ROOT_APPLICATION))?)?;
    add(APPS, render(&project.join(APPS))?)?;
    for app in &plan.apps {
        add(&app.path, render(&project.join(&app.path))?)?;
    }
    Ok(out)
}

/// The kind runtime's copy of the `paytool` realm (a ConfigMap Keycloak imports at start).
pub const REALM_FILE: &str = "stacks/kind/platform/keycloak/realm-paytool.json";
/// Prometheus's rules on kind: the local runtime's recording rules and the SLO rules made
/// from the same SLO file.
pub const RECORDING_RULES_FILE: &str = "stacks/kind/platform/observability/recording-rules.yaml";
pub const SLO_RULES_FILE: &str = "stacks/kind/platform/observability/slo-rules.yaml";
/// The starter chaos experiments as Chaos Mesh Workflows for the kind runtime's namespaces.
/// Not an Application of the app-of-apps: a Workflow runs when it is applied, so it is applied
/// when an experiment is meant to run (`paytool kube apply stacks/kind/chaos/experiments.yaml`
/// runs them all).
pub const CHAOS_FILE: &str = "stacks/kind/chaos/experiments.yaml";
const EXPERIMENTS: &str = "stacks/chaos/experiments";

/// Every starter experiment rendered for kind; what Chaos Mesh cannot express is said in a
/// comment above its workflow.
pub fn chaos(project: &Path) -> anyhow::Result<String> {
    use crate::chaos::chaos_mesh::{render, Layout};
    let mut out = format!(
        "# Made from {EXPERIMENTS} by paytool's Chaos Mesh renderer (cli/tests/kube.rs keeps it\n# current). Applying a Workflow runs it.\n"
    );
    for loaded in crate::chaos::experiment::load_all(&project.join(EXPERIMENTS))? {
        let rendered = render(&loaded.name, &loaded.experiment, Layout::Kind);
        out.push_str("---\n");
        for skipped in &rendered.skipped {
            out.push_str(&format!("# not rendered: {skipped}\n"));
        }
        out.push_str(&serde_yaml::to_string(&rendered.workflow)?);
    }
    Ok(out)
}

/// Kafka's topics on kind: the local runtime's topic list as Strimzi's KafkaTopics.
pub const TOPICS_FILE: &str = "stacks/kind/platform/kafka/topics.yaml";
const LOCAL_TOPICS: &str = "stacks/local/kafka/topics.json";
/// One broker on a one-node cluster.
const TOPIC_REPLICAS: u32 = 1;

/// The realm for kind, from the local runtime's own template: the standard HTTPS port, and each
/// client secret as a placeholder Keycloak fills from its pod's environment at import (the
/// Secret `keycloak`, made from the secret store), so that no secret is in Git.
pub fn realm(project: &Path) -> anyhow::Result<String> {
    use crate::runtime::components::keycloak::{realm, RealmSecrets};
    let secrets = RealmSecrets {
        merchant_dashboard: "${PAYTOOL_CLIENT_SECRET_MERCHANT_DASHBOARD}",
        wallet_web: "${PAYTOOL_CLIENT_SECRET_WALLET_WEB}",
        consumer_api: "${PAYTOOL_CLIENT_SECRET_CONSUMER_API}",
        merchant_api: "${PAYTOOL_CLIENT_SECRET_MERCHANT_API}",
        orchestrator: "${PAYTOOL_CLIENT_SECRET_ORCHESTRATOR}",
        operator: "${PAYTOOL_CLIENT_SECRET_OPERATOR}",
        operations: "${PAYTOOL_CLIENT_SECRET_OPERATIONS}",
        operator_password: "${PAYTOOL_OPERATOR_PASSWORD}",
    };
    realm(project, "", &secrets)
}

/// The local runtime's topics (name, partitions, configuration) as KafkaTopics of the
/// `payments` cluster.
pub fn topics(project: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(project.join(LOCAL_TOPICS))?;
    let topics: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let mut out = format!("# Made from {LOCAL_TOPICS} (cli/tests/kube.rs keeps it current).\n");
    for topic in topics {
        let name = topic["name"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("{LOCAL_TOPICS}: a topic without a name"))?;
        let object = serde_json::json!({
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaTopic",
            "metadata": { "name": name, "labels": { "strimzi.io/cluster": "payments" } },
            "spec": {
                "topicName": name,
                "partitions": topic["partitions"],
                "replicas": TOPIC_REPLICAS,
                "config": topic["config"],
            },
        });
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object)?);
    }
    Ok(out)
}

/// The files of the kind stacks that are made from the local runtime's sources (kustomize
/// cannot read files outside a stack's directory, nor render templates): each path with what
/// it must hold. `cli/tests/kube.rs` fails when one is stale, and writes them all with
/// PAYTOOL_WRITE_GOLDEN=1.
pub fn generated(project: &Path) -> anyhow::Result<Vec<(&'static str, String)>> {
    use crate::observe::slo_rules;
    use crate::runtime::components::alerting::{RECORDING_RULES, SLOS};
    let recording = std::fs::read_to_string(project.join(RECORDING_RULES))?;
    let slos = slo_rules::load_with_apps(project, &project.join(SLOS), &[])?;
    Ok(vec![
        (CHAOS_FILE, chaos(project)?),
        (TOPICS_FILE, topics(project)?),
        (REALM_FILE, realm(project)?),
        (RECORDING_RULES_FILE, recording),
        (SLO_RULES_FILE, slo_rules::rules(&slos).to_yaml()?),
    ])
}

/// The secret store's one Secret (namespace `paytool-secrets`, name `paytool`), made from an
/// installation's own secrets, the same the local runtime uses: what `paytool up --runtime
/// kind` writes before Argo CD syncs anything, and never into Git. Its keys are the
/// properties the stacks' ExternalSecrets name (cli/tests/kube.rs checks every one is here).
pub fn store_secret(secrets: &crate::runtime::home::Secrets) -> anyhow::Result<serde_json::Value> {
    let data: serde_json::Map<String, serde_json::Value> = store_properties(secrets)?
        .into_iter()
        .map(|(key, value)| (key.to_string(), serde_json::Value::from(value)))
        .collect();
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "paytool", "namespace": "paytool-secrets" },
        "type": "Opaque",
        "stringData": data,
    }))
}

/// Each property of the store's Secret and its value: the installation's secrets, and what is
/// derived from them as the local runtime derives it (the registry's htpasswd, Gitea's key).
pub fn store_properties(
    secrets: &crate::runtime::home::Secrets,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    use crate::runtime::components::registry;
    Ok(vec![
        (
            "postgres-password-orchestrator",
            secrets.db_orchestrator.clone(),
        ),
        (
            "postgres-password-consumer-api",
            secrets.db_consumer_api.clone(),
        ),
        (
            "postgres-password-merchant-api",
            secrets.db_merchant_api.clone(),
        ),
        ("postgres-password-keycloak", secrets.db_keycloak.clone()),
        ("keycloak-admin-password", secrets.keycloak_admin.clone()),
        (
            "client-secret-orchestrator",
            secrets.client_orchestrator.clone(),
        ),
        (
            "client-secret-consumer-api",
            secrets.client_consumer_api.clone(),
        ),
        (
            "client-secret-merchant-api",
            secrets.client_merchant_api.clone(),
        ),
        (
            "client-secret-wallet-web",
            secrets.client_wallet_web.clone(),
        ),
        (
            "client-secret-merchant-dashboard",
            secrets.client_merchant_dashboard.clone(),
        ),
        ("client-secret-operator", secrets.client_operator.clone()),
        (
            "client-secret-operations",
            crate::runtime::components::sign_in::client_secret(secrets),
        ),
        (
            "operator-password",
            crate::runtime::components::sign_in::password(secrets),
        ),
        (
            "operations-cookie-secret",
            crate::runtime::components::sign_in::cookie_secret(secrets),
        ),
        ("payment-code-key", secrets.payment_code_key.clone()),
        ("registry-htpasswd", registry::htpasswd_line(secrets)?),
        (
            "gitea-secret-key",
            crate::runtime::home::derive(&secrets.keycloak_admin, "gitea:secret-key"),
        ),
    ])
}

/// What a real run needs: kind, and a container engine for it.
fn missing_prerequisites() -> Vec<&'static str> {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
    };
    let mut missing = Vec::new();
    if !on_path("kind") {
        missing.push("kind");
    }
    let engine = Path::new("/var/run/docker.sock").exists() || on_path("docker");
    if !engine {
        missing.push("a Docker engine (kind runs its node as a container)");
    }
    missing
}

/// Refuses with one line naming what is missing, or what is not built yet.
fn refuse_without_cluster(verb: &str) -> anyhow::Error {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        fail(
            Code::Refused,
            format!("kind and an engine are here, but `paytool {verb} --runtime kind` is not built yet (docs/kubernetes.md); `paytool up --runtime kind --dry-run` prints what it will do"),
        )
    } else {
        fail(
            Code::Prerequisite,
            format!(
                "the kind runtime needs {} on this machine{}",
                missing.join(" and "),
                if verb == "up" {
                    "; `paytool up --runtime kind --dry-run` prints the plan and the manifests without them"
                } else {
                    ", so there is no kind cluster here"
                }
            ),
        )
    }
}

/// `paytool down --runtime kind`.
pub fn down() -> anyhow::Result<i32> {
    Err(refuse_without_cluster("down"))
}

/// `paytool status --runtime kind`.
pub fn status() -> anyhow::Result<i32> {
    Err(refuse_without_cluster("status"))
}

pub fn up(
    project: &Path,
    dry_run: bool,
    output: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<i32> {
    if !dry_run {
        return Err(refuse_without_cluster("up"));
    }
    let plan = plan(project)?;
    let manifests = rendered(project, &plan)?;
    if let Some(dir) = &output {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("manifests.yaml"), &manifests)?;
        std::fs::write(dir.join("plan.json"), serde_json::to_string_pretty(&plan)?)?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(0);
    }
    println!("The kind runtime's plan (--dry-run: nothing is changed)");
    for step in &plan.steps {
        println!("{:>3}. {:<12} {}", step.n, step.name, step.action);
    }
    println!(
        "\n{} Applications, {} objects rendered{}",
        plan.apps.len(),
        plan.objects,
        match &output {
            Some(dir) => format!(" into {}", dir.join("manifests.yaml").display()),
            None => ":\n".to_string(),
        }
    );
    if output.is_none() {
        print!("{manifests}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, wave: i32) -> App {
        App {
            name: name.into(),
            path: format!("services/{name}"),
            namespace: "payments".into(),
            wave,
            objects: 1,
        }
    }

    #[test]
    fn the_store_secret_carries_each_installation_secret_under_its_property() {
        let secrets = crate::runtime::home::Secrets {
            postgres_superuser: "su".into(),
            db_orchestrator: "db-o".into(),
            db_consumer_api: "db-c".into(),
            db_merchant_api: "db-m".into(),
            db_keycloak: "db-k".into(), // pragma: allowlist secret (a test value)
            keycloak_admin: "kc".into(), // pragma: allowlist secret (a test value)
            client_merchant_dashboard: "c-md".into(),
            client_wallet_web: "c-ww".into(),
            client_consumer_api: "c-c".into(),
            client_merchant_api: "c-m".into(),
            client_orchestrator: "c-o".into(),
            client_operator: "c-op".into(),
            payment_code_key: "pck".into(),
        };
        let secret = store_secret(&secrets).expect("made");
        let data = secret["stringData"].as_object().expect("data");
        assert_eq!(data.len(), 17);
        // The operators' sign-in: derived as the local runtime derives them.
        assert_eq!(
            data["client-secret-operations"],
            crate::runtime::components::sign_in::client_secret(&secrets).as_str()
        );
        assert_eq!(
            data["operations-cookie-secret"].as_str().map(str::len),
            Some(32)
        );
        assert!(data["registry-htpasswd"]
            .as_str()
            .is_some_and(|line| line.starts_with("paytool:$2")));
        assert_eq!(data["postgres-password-consumer-api"], "db-c");
        assert_eq!(data["client-secret-wallet-web"], "c-ww");
        assert_eq!(data["payment-code-key"], "pck");
        // The superuser's password stays with the installation: no stack needs it.
        assert!(!data.values().any(|v| v == "su"));
    }

    #[test]
    fn applications_of_one_wave_are_grouped_in_wave_order() {
        let apps = [app("namespaces", -10), app("a", 10), app("b", 10)];
        assert_eq!(
            waves(&apps),
            [(-10, vec!["namespaces"]), (10, vec!["a", "b"])]
        );
    }
}
