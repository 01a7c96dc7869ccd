//! The house rules for the project's own workloads, checked offline on rendered manifests
//! (`paytool kube check`): non-root, a read-only root filesystem, no privilege escalation,
//! requests and limits, liveness and readiness probes, and an image pinned by tag or digest
//! (never `latest`, never untagged). A workload may be exempted from named rules, each
//! exemption with its reason in the manifest: the annotations `policy.paytool.dev/exempt`
//! (rule keys, comma-separated: run-as-non-root, read-only-root, no-privilege-escalation,
//! resources, probes, pinned-image) and `policy.paytool.dev/reason`.

use super::apply::Manifest;
use serde_json::Value;

/// Kinds whose pod template is checked, and where the template is.
fn pod_spec(manifest: &Manifest) -> Option<&Value> {
    let object = &manifest.object;
    match manifest.kind() {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            Some(&object["spec"]["template"]["spec"])
        }
        // A Rollout over a Deployment (workloadRef) has no template of its own: the
        // Deployment's is checked.
        "Rollout" if object["spec"]["workloadRef"].is_object() => None,
        "Rollout" => Some(&object["spec"]["template"]["spec"]),
        "Job" => Some(&object["spec"]["template"]["spec"]),
        "CronJob" => Some(&object["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "Pod" => Some(&object["spec"]),
        _ => None,
    }
}

fn is_true(value: &Value) -> bool {
    value.as_bool() == Some(true)
}

/// Whether an image reference names a tag other than `latest`, or a digest.
pub fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    // The tag is after the last ':' that follows the last '/' (a registry's port is not one).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest",
        None => false,
    }
}

/// Selectors that, left out, widen an object to every pod of its namespace (a
/// NetworkPolicy's rules) or to none (a PodDisruptionBudget then protects nothing).
fn selector_violations(manifest: &Manifest) -> Vec<String> {
    let spec = &manifest.object["spec"];
    let empty = |selector: &Value| {
        selector["matchLabels"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
            && selector["matchExpressions"]
                .as_array()
                .is_none_or(Vec::is_empty)
    };
    match manifest.kind() {
        "NetworkPolicy" if empty(&spec["podSelector"]) => vec![format!(
            "{}: no podSelector: its rules would apply to every pod of the namespace",
            manifest.id()
        )],
        "PodDisruptionBudget" if empty(&spec["selector"]) => vec![format!(
            "{}: no selector: it would protect no pod",
            manifest.id()
        )],
        _ => Vec::new(),
    }
}

const EXEMPT: &str = "policy.paytool.dev/exempt";
const REASON: &str = "policy.paytool.dev/reason";
/// The rules by the keys an exemption names them with.
pub const RULES: [&str; 6] = [
    "run-as-non-root",
    "read-only-root",
    "no-privilege-escalation",
    "resources",
    "probes",
    "pinned-image",
];

/// Every rule an object breaks, as one line each naming it (and the container).
pub fn violations(manifest: &Manifest) -> Vec<String> {
    let Some(spec) = pod_spec(manifest) else {
        return selector_violations(manifest);
    };
    let id = manifest.id();
    let annotations = &manifest.object["metadata"]["annotations"];
    let exempt: Vec<&str> = annotations[EXEMPT]
        .as_str()
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for key in &exempt {
        if !RULES.contains(key) {
            out.push(format!(
                "{id}: {EXEMPT} names no rule {key:?} (one of {})",
                RULES.join(", ")
            ));
        }
    }
    if !exempt.is_empty()
        && annotations[REASON]
            .as_str()
            .is_none_or(|r| r.trim().is_empty())
    {
        out.push(format!("{id}: {EXEMPT} without a {REASON}"));
    }
    let checked = |rule: &str| !exempt.contains(&rule);
    let pod_non_root = is_true(&spec["securityContext"]["runAsNonRoot"]);
    // Jobs run to completion: no probes are asked of them.
    let long_running = !matches!(manifest.kind(), "Job" | "CronJob" | "Pod");
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        out.push(format!("{id}: no containers"));
    }
    for container in &containers {
        let name = container["name"].as_str().unwrap_or("?");
        let at = format!("{id}, container {name}");
        let security = &container["securityContext"];
        if checked("run-as-non-root") && !pod_non_root && !is_true(&security["runAsNonRoot"]) {
            out.push(format!("{at}: runAsNonRoot is not set"));
        }
        if checked("read-only-root") && !is_true(&security["readOnlyRootFilesystem"]) {
            out.push(format!("{at}: the root filesystem is writable"));
        }
        if checked("no-privilege-escalation")
            && security["allowPrivilegeEscalation"].as_bool() != Some(false)
        {
            out.push(format!("{at}: allowPrivilegeEscalation is not false"));
        }
        let resources = &container["resources"];
        for (section, key) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "cpu"),
            ("limits", "memory"),
        ] {
            if checked("resources") && resources[section][key].is_null() {
                out.push(format!("{at}: no {section}.{key}"));
            }
        }
        if long_running && checked("probes") {
            for probe in ["livenessProbe", "readinessProbe"] {
                if container[probe].is_null() {
                    out.push(format!("{at}: no {probe}"));
                }
            }
        }
        match container["image"].as_str() {
            Some(_) if !checked("pinned-image") => {}
            Some(image) if pinned(image) => {}
            Some(image) => out.push(format!(
                "{at}: the image {image} is not pinned (a tag other than latest, or a digest)"
            )),
            None => out.push(format!("{at}: no image")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::apply::parse;

    const GOOD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: payments }
spec:
  template:
    spec:
      securityContext: { runAsNonRoot: true }
      containers:
        - name: api
          image: registry.local.test:5000/paytool/api:3f2a1c9
          securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false }
          resources:
            requests: { cpu: 50m, memory: 32Mi }
            limits: { cpu: 500m, memory: 128Mi }
          livenessProbe: { httpGet: { path: /health/live, port: 8080 } }
          readinessProbe: { httpGet: { path: /health/ready, port: 8080 } }
"#;

    #[test]
    fn a_workload_that_keeps_every_rule_has_no_violation() {
        let manifest = &parse(GOOD, "good.yaml").expect("parsed")[0];
        assert_eq!(violations(manifest), Vec::<String>::new());
    }

    #[test]
    fn each_broken_rule_is_named_with_its_object_and_container() {
        let bad = GOOD
            .replace("runAsNonRoot: true", "runAsNonRoot: false")
            .replace(
                "readOnlyRootFilesystem: true",
                "readOnlyRootFilesystem: false",
            )
            .replace(":3f2a1c9", ":latest")
            .replace("            limits: { cpu: 500m, memory: 128Mi }\n", "")
            .replace(
                "          readinessProbe: { httpGet: { path: /health/ready, port: 8080 } }\n",
                "",
            );
        let manifest = &parse(&bad, "bad.yaml").expect("parsed")[0];
        let found = violations(manifest);
        let expected = [
            "runAsNonRoot",
            "root filesystem is writable",
            "no limits.cpu",
            "no limits.memory",
            "no readinessProbe",
            "not pinned",
        ];
        for rule in expected {
            assert!(
                found
                    .iter()
                    .any(|v| v.contains(rule)
                        && v.starts_with("Deployment payments/api, container api")),
                "{rule} missing from {found:?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:?}");
    }

    #[test]
    fn an_exemption_lifts_only_the_rules_it_names_and_needs_a_reason() {
        let writable = GOOD.replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
        );
        let exempted = writable.replace(
            "metadata: { name: api, namespace: payments }",
            "metadata:\n  name: api\n  namespace: payments\n  annotations:\n    policy.paytool.dev/exempt: read-only-root\n    policy.paytool.dev/reason: nginx rewrites its configuration",
        );
        let manifest = &parse(&exempted, "x.yaml").expect("parsed")[0];
        assert_eq!(violations(manifest), Vec::<String>::new());

        let unexplained = exempted.replace(
            "    policy.paytool.dev/reason: nginx rewrites its configuration\n",
            "",
        );
        let manifest = &parse(&unexplained, "x.yaml").expect("parsed")[0];
        let found = violations(manifest);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("without a policy.paytool.dev/reason"));

        let wrong = exempted.replace("exempt: read-only-root", "exempt: read-only-rot");
        let manifest = &parse(&wrong, "x.yaml").expect("parsed")[0];
        let found = violations(manifest);
        assert!(
            found
                .iter()
                .any(|v| v.contains("names no rule \"read-only-rot\"")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|v| v.contains("root filesystem is writable")),
            "{found:?}"
        );
    }

    #[test]
    fn a_tag_or_a_digest_pins_an_image_and_a_registry_port_is_not_a_tag() {
        assert!(pinned("registry.local.test/paytool/orchestrator:3f2a1c9"));
        assert!(pinned("quay.io/x/y@sha256:0123"));
        assert!(!pinned("registry.local.test:5000/paytool/orchestrator"));
        assert!(!pinned("nginx:latest"));
        assert!(!pinned("nginx"));
    }

    #[test]
    fn a_network_policy_or_disruption_budget_without_a_selector_is_a_violation() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: api, namespace: payments }\nspec:\n  policyTypes: [Ingress]\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: { name: api, namespace: payments }\nspec:\n  minAvailable: 1\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: { name: ok, namespace: payments }\nspec:\n  minAvailable: 1\n  selector: { matchLabels: { app.kubernetes.io/name: ok } }\n";
        let manifests = parse(text, "np.yaml").expect("parsed");
        let found: Vec<Vec<String>> = manifests.iter().map(violations).collect();
        assert!(found[0][0].starts_with("NetworkPolicy payments/api: no podSelector"));
        assert!(found[1][0].starts_with("PodDisruptionBudget payments/api: no selector"));
        assert!(found[2].is_empty(), "{:?}", found[2]);
    }

    #[test]
    fn kinds_without_a_pod_template_are_not_checked() {
        let manifest = &parse(
            "apiVersion: v1\nkind: Service\nmetadata: { name: api }\n",
            "s.yaml",
        )
        .expect("parsed")[0];
        assert!(violations(manifest).is_empty());
    }
}
