//! An experiment's method as Chaos Mesh resources, for the Kubernetes runtime: one `Workflow`
//! (`chaos-mesh.org/v1alpha1`) whose templates are the method's faults and waits, in order.
//!
//! A fault with a window stays on while the steps after it run (as in a local run): it becomes a
//! `Parallel` template of the fault (its `deadline` the window) and a `Serial` template of
//! the rest of the method. A fault that happens at once (kill, terminate) is a one-shot chaos
//! with a short deadline. Waits are `Suspend` templates.
//!
//! Targets are picked by the labels the Kubernetes manifests give every workload:
//! `app.kubernetes.io/name: <component>`, in one namespace (`--namespace`) or in the kind
//! runtime's namespace for that component ([`Layout::Kind`]). What Chaos Mesh cannot
//! express is left out and said (`skipped`), never approximated silently: a PostgreSQL
//! switchover (Patroni's, not a pod's), a slow close, the services' failpoints (they need the
//! operator's token), and the probes (the steady state and the invariants stay paytool's: it
//! checks them around the workflow).

use super::experiment::{Direction, Experiment, Fault, Step, Target};
use crate::runtime::components::toxiproxy::Destination;
use serde_json::{json, Value};

pub const API_VERSION: &str = "chaos-mesh.org/v1alpha1";
/// The label every workload of the Kubernetes manifests carries with its component's name.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// What a one-shot chaos (a pod killed) is given to happen in.
const INSTANT_DEADLINE: &str = "10s";
/// Chaos Mesh's bandwidth buffer and queue limit (bytes), as its examples set them.
const BANDWIDTH_BUFFER_BYTES: u32 = 10_000;
const BANDWIDTH_LIMIT_BYTES: u32 = 20_971_520;
/// ENOSPC: what a write on a full disk fails with.
const ENOSPC: i32 = 28;

/// The workflow, and what of the experiment it could not express.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub workflow: Value,
    pub skipped: Vec<String>,
}

/// Where the platform's components run.
#[derive(Debug, Clone, Copy)]
pub enum Layout<'a> {
    /// Every component in one namespace, the workflow too.
    Single(&'a str),
    /// The kind runtime's namespaces (stacks/kind/infrastructure/namespaces), the workflows in
    /// Chaos Mesh's own.
    Kind,
}

impl Layout<'_> {
    fn workflow_namespace(&self) -> &str {
        match self {
            Self::Single(namespace) => namespace,
            Self::Kind => "chaos-mesh",
        }
    }

    /// The namespace a component's pods are in.
    fn of(&self, component: &str) -> &str {
        match self {
            Self::Single(namespace) => namespace,
            Self::Kind => match component {
                "postgres" | "patroni" | "kafka" => "data",
                "keycloak" => "identity",
                "prometheus" | "alertmanager" | "jaeger" | "otel-collector" | "agent" => {
                    "observability"
                }
                "gateway" => "ingress-nginx",
                "registry" | "git" | "ci" | "ci-worker" => "delivery",
                // The services, and scaffolded ones.
                _ => "payments",
            },
        }
    }
}

/// Renders the method of experiment `name` for the platform laid out as `layout` says.
pub fn render(name: &str, experiment: &Experiment, layout: Layout<'_>) -> Rendered {
    let namespace = layout.workflow_namespace();
    let mut builder = Builder {
        layout,
        templates: Vec::new(),
        skipped: Vec::new(),
        count: 0,
    };
    let entry = builder.serial(&experiment.method, "method");
    for probe in experiment
        .steady_state
        .probes
        .iter()
        .chain(experiment.method.iter().filter_map(|s| match s {
            Step::Probe(p) => Some(p),
            _ => None,
        }))
    {
        builder.skipped.push(format!(
            "probe {}: checked by paytool around the workflow",
            probe.name()
        ));
    }
    let workflow = json!({
        "apiVersion": API_VERSION,
        "kind": "Workflow",
        "metadata": {
            "name": dns_name(name),
            "namespace": namespace,
            "labels": { "app.kubernetes.io/managed-by": "paytool" },
            "annotations": { "paytool.local.test/title": experiment.title },
        },
        "spec": { "entry": entry, "templates": builder.templates },
    });
    Rendered {
        workflow,
        skipped: builder.skipped,
    }
}

struct Builder<'a> {
    layout: Layout<'a>,
    templates: Vec<Value>,
    skipped: Vec<String>,
    count: usize,
}

impl Builder<'_> {
    fn next_name(&mut self, what: &str) -> String {
        self.count += 1;
        dns_name(&format!("{}-{what}", self.count))
    }

    /// A `Serial` template of `steps`; its name.
    fn serial(&mut self, steps: &[Step], what: &str) -> String {
        let name = self.next_name(what);
        let mut children = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Wait(s) => {
                    let wait = self.next_name(&format!("wait-{s}s"));
                    self.templates.push(json!({
                        "name": wait, "templateType": "Suspend", "deadline": format!("{s}s"),
                    }));
                    children.push(wait);
                }
                Step::Probe(_) => {}
                Step::Fault(fault) => {
                    let Some(chaos) = self.chaos(fault) else {
                        continue;
                    };
                    let later = steps[i + 1..]
                        .iter()
                        .any(|s| matches!(s, Step::Wait(_) | Step::Fault(_)));
                    if fault.duration_s() == 0 || !later {
                        children.push(chaos);
                        continue;
                    }
                    // The window overlaps the rest of the method.
                    let rest = self.serial(&steps[i + 1..], "rest");
                    let both = self.next_name("parallel");
                    self.templates.push(json!({
                        "name": both, "templateType": "Parallel", "children": [chaos, rest],
                    }));
                    children.push(both);
                    break;
                }
            }
        }
        self.templates.push(json!({
            "name": name, "templateType": "Serial", "children": children,
        }));
        name
    }

    fn selector(&self, component: &str) -> Value {
        json!({ "namespaces": [self.layout.of(component)], "labelSelectors": { NAME_LABEL: component } })
    }

    fn target(&self, target: &Target) -> (Value, &'static str) {
        // An instance cannot be named by a label the replicas share: one pod is chosen.
        (self.selector(target.component.as_str()), "one")
    }

    /// A chaos template for the fault; its name, or none (then said in `skipped`).
    fn chaos(&mut self, fault: &Fault) -> Option<String> {
        let kind = fault.kind();
        let deadline = match fault.duration_s() {
            0 => INSTANT_DEADLINE.to_string(),
            s => format!("{s}s"),
        };
        let (template_type, key, spec) = match fault {
            Fault::Kill { target } | Fault::Terminate { target } => {
                let (selector, mode) = self.target(target);
                let grace = if matches!(fault, Fault::Kill { .. }) {
                    0
                } else {
                    30
                };
                (
                    "PodChaos",
                    "podChaos",
                    json!({ "action": "pod-kill", "mode": mode, "selector": selector, "gracePeriod": grace }),
                )
            }
            Fault::Pause { target, .. } => {
                let (selector, mode) = self.target(target);
                (
                    "PodChaos",
                    "podChaos",
                    json!({ "action": "pod-failure", "mode": mode, "selector": selector, "duration": deadline }),
                )
            }
            Fault::ClockSkew {
                target, offset_s, ..
            } => {
                let (selector, mode) = self.target(target);
                (
                    "TimeChaos",
                    "timeChaos",
                    json!({ "mode": mode, "selector": selector, "timeOffset": format!("{offset_s}s"),
                            "clockIds": ["CLOCK_REALTIME"], "duration": deadline }),
                )
            }
            Fault::DiskFull { target, .. } => {
                let (selector, mode) = self.target(target);
                (
                    "IOChaos",
                    "ioChaos",
                    json!({ "action": "fault", "mode": mode, "selector": selector,
                            "volumePath": "/var/lib/kafka/data", "path": "/var/lib/kafka/data/**/*",
                            "errno": ENOSPC, "percent": 100, "methods": ["WRITE"], "duration": deadline }),
                )
            }
            Fault::CpuPressure {
                workers,
                load_percent,
                ..
            } => (
                "StressChaos",
                "stressChaos",
                json!({ "mode": "all", "selector": { "namespaces": [self.layout.of("machine")] },
                        "stressors": { "cpu": { "workers": workers, "load": load_percent } },
                        "duration": deadline }),
            ),
            Fault::MemoryPressure { megabytes, .. } => (
                "StressChaos",
                "stressChaos",
                json!({ "mode": "one", "selector": { "namespaces": [self.layout.of("machine")] },
                        "stressors": { "memory": { "workers": 1, "size": format!("{megabytes}MB") } },
                        "duration": deadline }),
            ),
            Fault::Latency {
                from,
                to,
                latency_ms,
                jitter_ms,
                direction,
                ..
            } => (
                "NetworkChaos",
                "networkChaos",
                self.network(
                    from.as_str(),
                    *to,
                    *direction,
                    Direction::Downstream,
                    json!({ "action": "delay",
                            "delay": { "latency": format!("{latency_ms}ms"), "jitter": format!("{jitter_ms}ms") },
                            "duration": deadline }),
                ),
            ),
            Fault::Bandwidth {
                from,
                to,
                rate_kbps,
                direction,
                ..
            } => (
                "NetworkChaos",
                "networkChaos",
                // Toxiproxy counts kilobytes a second, Chaos Mesh kilobits.
                self.network(
                    from.as_str(),
                    *to,
                    *direction,
                    Direction::Downstream,
                    json!({ "action": "bandwidth",
                            "bandwidth": { "rate": format!("{}kbps", u64::from(*rate_kbps) * 8),
                                           "limit": BANDWIDTH_LIMIT_BYTES, "buffer": BANDWIDTH_BUFFER_BYTES },
                            "duration": deadline }),
                ),
            ),
            Fault::Timeout {
                from,
                to,
                direction,
                ..
            } => (
                "NetworkChaos",
                "networkChaos",
                self.network(
                    from.as_str(),
                    *to,
                    *direction,
                    Direction::Both,
                    json!({ "action": "partition", "duration": deadline }),
                ),
            ),
            Fault::Cut { from, to, .. } => (
                "NetworkChaos",
                "networkChaos",
                self.network(
                    from.as_str(),
                    *to,
                    None,
                    Direction::Both,
                    json!({ "action": "partition", "duration": deadline }),
                ),
            ),
            Fault::ResetPeer {
                from,
                to,
                direction,
                ..
            } => (
                "NetworkChaos",
                "networkChaos",
                // No reset in Chaos Mesh: every packet lost is what the caller sees nearest.
                self.network(
                    from.as_str(),
                    *to,
                    *direction,
                    Direction::Upstream,
                    json!({ "action": "loss", "loss": { "loss": "100", "correlation": "0" },
                            "duration": deadline }),
                ),
            ),
            Fault::Failover => {
                self.skipped.push(
                    "failover: a Patroni switchover, not a pod's fault; `paytool db failover` does it"
                        .into(),
                );
                return None;
            }
            Fault::SlowClose { .. } => {
                self.skipped
                    .push("slow-close: Chaos Mesh has no delayed close".into());
                return None;
            }
            Fault::Failpoint { name, .. } => {
                self.skipped.push(format!(
                    "failpoint {name}: set through the services' admin endpoint, not a Chaos Mesh resource"
                ));
                return None;
            }
        };
        let name = self.next_name(&kind);
        self.templates.push(json!({
            "name": name, "templateType": template_type, "deadline": deadline, key: spec,
        }));
        Some(name)
    }

    /// A NetworkChaos spec from the caller's pods to the destination's, with the direction the
    /// local fault would take (upstream: what the caller sends, `to`; downstream: the answers,
    /// `from`).
    fn network(
        &self,
        from: &str,
        to: Destination,
        direction: Option<Direction>,
        default: Direction,
        mut spec: Value,
    ) -> Value {
        let direction = match direction.unwrap_or(default) {
            Direction::Upstream => "to",
            Direction::Downstream => "from",
            Direction::Both => "both",
        };
        spec["mode"] = json!("all");
        spec["selector"] = self.selector(from);
        spec["direction"] = json!(direction);
        spec["target"] = json!({ "mode": "all", "selector": self.selector(to.as_str()) });
        spec
    }
}

/// A DNS-1123 label: lowercase letters, digits and `-`, at most 63 characters.
fn dns_name(text: &str) -> String {
    let mut name: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    name.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::experiment::parse;

    fn rendered(yaml: &str) -> Rendered {
        render(
            "an-experiment",
            &parse(yaml).expect("a valid experiment"),
            Layout::Single("paytool"),
        )
    }

    fn template<'a>(workflow: &'a Value, name: &str) -> &'a Value {
        workflow["spec"]["templates"]
            .as_array()
            .expect("templates")
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no template {name}"))
    }

    fn of_type<'a>(workflow: &'a Value, kind: &str) -> Vec<&'a Value> {
        workflow["spec"]["templates"]
            .as_array()
            .expect("templates")
            .iter()
            .filter(|t| t["templateType"] == kind)
            .collect()
    }

    #[test]
    fn a_window_overlaps_the_steps_after_it_and_a_kill_does_not() {
        let out = rendered(
            "title: t
steady_state: {title: s, probes: [{type: ledger}]}
method:
  - wait: 3
  - fault: {type: kill, target: {component: orchestrator}}
  - fault: {type: pause, target: {component: kafka}, duration_s: 30}
  - wait: 10
  - probe: {type: payment}
",
        );
        let workflow = &out.workflow;
        assert_eq!(workflow["kind"], "Workflow");
        assert_eq!(workflow["apiVersion"], API_VERSION);
        let entry = template(workflow, workflow["spec"]["entry"].as_str().expect("entry"));
        assert_eq!(entry["templateType"], "Serial");
        let children: Vec<&str> = entry["children"]
            .as_array()
            .expect("children")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(children.len(), 3, "{children:?}");
        assert_eq!(template(workflow, children[0])["deadline"], "3s");
        let kill = template(workflow, children[1]);
        assert_eq!(kill["podChaos"]["action"], "pod-kill");
        assert_eq!(kill["podChaos"]["gracePeriod"], 0);
        assert_eq!(
            kill["podChaos"]["selector"]["labelSelectors"][NAME_LABEL],
            "orchestrator"
        );
        let parallel = template(workflow, children[2]);
        assert_eq!(parallel["templateType"], "Parallel");
        let pause = template(workflow, parallel["children"][0].as_str().expect("a name"));
        assert_eq!(pause["podChaos"]["action"], "pod-failure");
        assert_eq!(pause["deadline"], "30s");
        let rest = template(workflow, parallel["children"][1].as_str().expect("a name"));
        let waits = rest["children"].as_array().expect("children");
        assert_eq!(waits.len(), 1, "the 10 s wait runs under the pause");
        assert!(out.skipped.iter().any(|s| s.starts_with("probe payment")));
    }

    #[test]
    fn each_fault_type_becomes_its_chaos_mesh_kind_or_is_said_to_be_skipped() {
        let out = rendered(
            "title: t
requires: {chaos: true, ha: true}
steady_state: {title: s, probes: [{type: ledger}]}
method:
  - fault: {type: latency, from: consumer-api, to: merchant-api, latency_ms: 500, jitter_ms: 20, duration_s: 5}
  - fault: {type: bandwidth, from: orchestrator, to: postgres, rate_kbps: 100, duration_s: 5}
  - fault: {type: cut, from: consumer-api, to: orchestrator, duration_s: 5}
  - fault: {type: clock-skew, target: {component: consumer-api}, offset_s: -90, duration_s: 5}
  - fault: {type: disk-full, target: {component: kafka}, duration_s: 5}
  - fault: {type: cpu-pressure, workers: 2, load_percent: 80, duration_s: 5}
  - fault: {type: failover}
  - fault: {type: failpoint, target: {component: orchestrator}, name: orchestrator.saga.before-step, actions: return, duration_s: 5}
",
        );
        let workflow = &out.workflow;
        let network = of_type(workflow, "NetworkChaos");
        assert_eq!(network.len(), 3);
        let delay = &network[0]["networkChaos"];
        assert_eq!(delay["action"], "delay");
        assert_eq!(delay["delay"]["latency"], "500ms");
        assert_eq!(delay["direction"], "from", "downstream: the answers");
        assert_eq!(
            delay["selector"]["labelSelectors"][NAME_LABEL],
            "consumer-api"
        );
        assert_eq!(
            delay["target"]["selector"]["labelSelectors"][NAME_LABEL],
            "merchant-api"
        );
        assert_eq!(network[1]["networkChaos"]["bandwidth"]["rate"], "800kbps");
        assert_eq!(network[2]["networkChaos"]["action"], "partition");
        assert_eq!(network[2]["networkChaos"]["direction"], "both");
        let time = of_type(workflow, "TimeChaos");
        assert_eq!(time[0]["timeChaos"]["timeOffset"], "-90s");
        let io = of_type(workflow, "IOChaos");
        assert_eq!(io[0]["ioChaos"]["errno"], ENOSPC);
        let stress = of_type(workflow, "StressChaos");
        assert_eq!(stress[0]["stressChaos"]["stressors"]["cpu"]["load"], 80);
        assert!(out.skipped.iter().any(|s| s.starts_with("failover")));
        assert!(out.skipped.iter().any(|s| s.starts_with("failpoint")));
    }

    #[test]
    fn every_starter_experiment_renders_with_names_kubernetes_takes_and_every_child_defined() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crate::chaos::experiment::EXPERIMENTS_DIR);
        let all = crate::chaos::experiment::load_all(&dir).expect("the experiments");
        assert!(all.len() >= 12);
        for loaded in all {
            let out = render(&loaded.name, &loaded.experiment, Layout::Single("paytool"));
            let templates = out.workflow["spec"]["templates"]
                .as_array()
                .expect("templates");
            let names: Vec<&str> = templates
                .iter()
                .filter_map(|t| t["name"].as_str())
                .collect();
            for name in &names {
                assert!(name.len() <= 63 && !name.is_empty(), "{name}");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                    "{name}"
                );
            }
            for template in templates {
                for child in template["children"].as_array().into_iter().flatten() {
                    let child = child.as_str().expect("a name");
                    assert!(
                        names.contains(&child),
                        "{}: {child} is not defined",
                        loaded.name
                    );
                }
            }
            assert!(names.contains(&out.workflow["spec"]["entry"].as_str().expect("an entry")));
        }
    }
}
