//! The kind runtime's stacks against a real Kubernetes API server: `paytool kube serve` runs
//! kube-apiserver 1.37.2 and etcd 3.7.3 (built from source by
//! scripts/install-kube-apiserver.sh; this test runs it, which waits for a build already
//! under way), `paytool kube apply` applies every stack server-side, and kubectl, a client of
//! its own, reads back what the server kept. Ports 30500-30512.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A first start of the API server on a busy machine (it is ready in about 4 s when quiet).
const SERVE_READY_TIMEOUT_MS: u64 = 150_000;
/// A build of both binaries from nothing takes about ten minutes on two cores.
const INSTALL_TIMEOUT_MS: u64 = 40 * 60 * 1000;

fn project() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the project")
        .to_path_buf()
}

fn paytool() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paytool"));
    command.current_dir(project()).env_remove("KUBECONFIG");
    command
}

/// The binaries and the CRDs, made (or waited for) by the project's own scripts.
fn install() {
    run_install("scripts/install-kube-apiserver.sh");
    run_install("scripts/install-crds.sh");
}

fn run_install(script: &str) {
    let mut child = Command::new(project().join(script))
        .stdout(Stdio::null())
        .spawn()
        .expect("the install script starts");
    let deadline = std::time::Instant::now() + Duration::from_millis(INSTALL_TIMEOUT_MS);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{script} failed");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{script} ran past its bound"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A running `paytool kube serve`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl Server {
    fn start(port: u16) -> Self {
        install();
        let dir = std::env::temp_dir().join(format!("paytool-kube-test-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = paytool()
            .args([
                "kube",
                "serve",
                "--json",
                "--port",
                &port.to_string(),
                "--dir",
            ])
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("paytool kube serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_millis(SERVE_READY_TIMEOUT_MS))
            .expect("the API server is ready in time");
        let served: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve prints one JSON line when ready ({e}): {line:?}"));
        assert_eq!(served["version"], "v1.37.2", "{served}");
        assert_eq!(served["server"], format!("https://127.0.0.1:{port}"));
        Self {
            child,
            kubeconfig: PathBuf::from(served["kubeconfig"].as_str().expect("kubeconfig")),
            dir,
        }
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        let (ok, text) = self.kubectl(&all);
        assert!(ok, "kubectl {all:?}: {text}");
        serde_json::from_str(&text).expect("kubectl prints JSON")
    }

    fn apply(&self, paths: &[&Path]) -> (i32, Value) {
        let output = paytool()
            .args(["kube", "apply", "--json", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(paths)
            .output()
            .expect("paytool kube apply runs");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "apply prints a JSON report ({e}); stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), report)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..60 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = self.child.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn items(list: &Value) -> Vec<&Value> {
    list["items"].as_array().expect("a list").iter().collect()
}

#[test]
fn every_stack_is_applied_to_a_real_api_server_and_reads_back_as_rendered() {
    let server = Server::start(30500);
    let (code, report) = server.apply(&[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["refused"], 0, "{report:#}");
    let objects = report["objects"].as_array().expect("objects");
    assert!(objects.len() >= 30, "{} objects", objects.len());
    assert!(
        objects.iter().all(|o| o["result"] == "applied"),
        "{report:#}"
    );

    // What the server kept is what the overlays say: their patches applied to the bases.
    let deployments = server.get(&["deployments", "-n", "payments", "--show-managed-fields"]);
    let mut names: Vec<&str> = items(&deployments)
        .iter()
        .map(|d| d["metadata"]["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["consumer-api", "merchant-api", "orchestrator"]);
    for deployment in items(&deployments) {
        let name = deployment["metadata"]["name"].as_str().expect("name");
        let spec = &deployment["spec"];
        assert_eq!(
            spec["replicas"], 1,
            "{name}: the local overlay's one replica"
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let container = &pod["containers"][0];
        assert_eq!(
            container["image"],
            format!("registry.local.test/paytool/{name}:unreleased")
        );
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"],
            "/health/ready"
        );
        // Server-side apply recorded paytool as the manager of what it set.
        let managers: Vec<&str> = deployment["metadata"]["managedFields"]
            .as_array()
            .expect("managed fields")
            .iter()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert!(managers.contains(&"paytool"), "{name}: {managers:?}");
    }
    // Each network policy selects its own service's pods (an empty selector would widen it to
    // the whole namespace), and the orchestrator takes calls from the two APIs only.
    let policy = server.get(&["networkpolicy", "orchestrator", "-n", "payments"]);
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "orchestrator"
    );
    let callers: Vec<&str> = policy["spec"]["ingress"][0]["from"]
        .as_array()
        .expect("from")
        .iter()
        .filter_map(|peer| peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str())
        .collect();
    assert_eq!(callers, ["consumer-api", "merchant-api"]);
    let namespace = server.get(&["namespace", "payments"]);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let ingress = server.get(&["ingress", "consumer-api", "-n", "payments"]);
    let hosts: Vec<&str> = ingress["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert_eq!(hosts, ["api.local.test", "wallet.local.test"]);

    // The ingress controller's class is the one the services' Ingresses name, and its
    // cluster-wide role was accepted by RBAC (which refuses a role granting what its author
    // lacks; the admin here has everything, so this checks the rules' form).
    let class = server.get(&["ingressclass", "nginx"]);
    assert_eq!(class["spec"]["controller"], "k8s.io/ingress-nginx");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let role = server.get(&["clusterrole", "ingress-nginx"]);
    assert!(
        role["rules"].as_array().is_some_and(|r| r.len() >= 5),
        "{role}"
    );

    // Prometheus may list pods (its discovery) and nothing else; it reads its rules from the
    // ConfigMap kustomize made, recording and SLO rules both.
    let role = server.get(&["clusterrole", "paytool-prometheus"]);
    assert_eq!(role["rules"][0]["resources"][0], "pods");
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    let prometheus = server.get(&["deployment", "prometheus", "-n", "observability"]);
    let config = &prometheus["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"];
    let files = server.get(&[
        "configmap",
        config.as_str().expect("name"),
        "-n",
        "observability",
    ]);
    let mut keys: Vec<&String> = files["data"].as_object().expect("data").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["prometheus.yml", "recording-rules.yaml", "slo-rules.yaml"]
    );

    // Keycloak imports the realm from its ConfigMap (kustomize's name, with its hash).
    let keycloak = server.get(&["deployment", "keycloak", "-n", "identity"]);
    let volume = &keycloak["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"];
    let realm = server.get(&[
        "configmap",
        volume.as_str().expect("name"),
        "-n",
        "identity",
    ]);
    assert!(realm["data"]["realm-paytool.json"]
        .as_str()
        .is_some_and(|r| r.contains("\"realm\": \"paytool\"")));

    // The app-of-apps is on the server too: Argo CD's CRDs (made from its Go API types)
    // accepted every Application, and the root.
    let applications = server.get(&["applications.argoproj.io", "-n", "argocd"]);
    let mut names: Vec<&str> = items(&applications)
        .iter()
        .filter_map(|a| a["metadata"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "consumer-api",
            "delivery",
            "ingress-nginx",
            "kafka",
            "keycloak",
            "merchant-api",
            "namespaces",
            "observability",
            "orchestrator",
            "postgres",
            "rollouts",
            "root",
            "secrets"
        ]
    );
    // PostgreSQL is CloudNativePG's Cluster (its CRDs made from its own Go package), with a
    // database and an owner per service and for Keycloak.
    let cluster = server.get(&["clusters.postgresql.cnpg.io", "payments-db", "-n", "data"]);
    assert_eq!(cluster["spec"]["instances"], 1);
    let databases = server.get(&["databases.postgresql.cnpg.io", "-n", "data"]);
    let mut names: Vec<&str> = items(&databases)
        .iter()
        .filter_map(|d| d["spec"]["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["consumer_api", "keycloak", "merchant_api"]);
    // Kafka is Strimzi's (its CRDs from its own generator), with the local runtime's topics.
    let kafka = server.get(&["kafkas.kafka.strimzi.io", "payments", "-n", "data"]);
    assert_eq!(kafka["spec"]["kafka"]["listeners"][0]["port"], 9092);
    let topics = server.get(&["kafkatopics.kafka.strimzi.io", "-n", "data"]);
    let mut names: Vec<&str> = items(&topics)
        .iter()
        .filter_map(|t| t["spec"]["topicName"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "consumers.v1",
            "dead-letter.v1",
            "ledger.v1",
            "merchants.v1",
            "payments.v1"
        ]
    );
    // Each service is a canary Rollout over its Deployment, judged by the platform's analysis,
    // and the autoscaler scales the Rollout.
    for service in ["consumer-api", "merchant-api", "orchestrator"] {
        let rollout = server.get(&["rollouts.argoproj.io", service, "-n", "payments"]);
        assert_eq!(rollout["spec"]["workloadRef"]["kind"], "Deployment");
        assert_eq!(rollout["spec"]["workloadRef"]["name"], service);
        let steps = rollout["spec"]["strategy"]["canary"]["steps"]
            .as_array()
            .expect("steps");
        assert!(steps
            .iter()
            .any(|s| { s["analysis"]["templates"][0]["templateName"] == "paytool-canary" }));
        let hpa = server.get(&["hpa", service, "-n", "payments"]);
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Rollout");
        // Its Secret comes from the store: every key the Deployment reads that is secret.
        let secret = server.get(&[
            "externalsecrets.external-secrets.io",
            service,
            "-n",
            "payments",
        ]);
        let keys = secret["spec"]["target"]["template"]["data"]
            .as_object()
            .expect("template");
        assert!(
            keys.contains_key("APP__DATABASE__URL")
                && keys.contains_key("APP__KEYCLOAK__CLIENT_SECRET")
        );
    }
    let analysis = server.get(&["clusteranalysistemplates.argoproj.io", "paytool-canary"]);
    assert_eq!(
        analysis["spec"]["metrics"].as_array().map(Vec::len),
        Some(2)
    );
    let store = server.get(&["clustersecretstores.external-secrets.io", "paytool"]);
    assert_eq!(
        store["spec"]["provider"]["kubernetes"]["remoteNamespace"],
        "paytool-secrets"
    );
    // The starter chaos experiments, as Chaos Mesh Workflows in the kind layout, are accepted
    // by Chaos Mesh's CRDs (and would run: none is applied unless asked).
    let experiments = project().join(paytool::kube::kind::CHAOS_FILE);
    let (code, chaos) = server.apply(&[&experiments]);
    assert_eq!(code, 0, "{chaos:#}");
    let workflows = server.get(&["workflows.chaos-mesh.org", "-n", "chaos-mesh"]);
    let rendered = std::fs::read_dir(project().join("stacks/chaos/experiments"))
        .expect("experiments")
        .count();
    assert_eq!(items(&workflows).len(), rendered);
    // And the CRD's schema is enforced: an Application whose sync policy is not the type
    // Argo CD reads is refused by the server, naming the field.
    let bad = server.dir.join("bad-application.yaml");
    std::fs::write(
        &bad,
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: { name: bad, namespace: argocd }\nspec:\n  project: default\n  source: { repoURL: http://git.local.test/paytool.git, path: x }\n  destination: { server: https://kubernetes.default.svc, namespace: x }\n  syncPolicy: { automated: { prune: \"yes\" } }\n",
    )
    .expect("written");
    let (code, refused) = server.apply(&[&bad]);
    assert_eq!(code, 1, "{refused:#}");
    let message = refused["objects"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("prune"), "{message}");

    // A second apply changes nothing and is accepted again: apply is idempotent.
    let before = server.get(&["deployment", "orchestrator", "-n", "payments"]);
    let (code, again) = server.apply(&[]);
    assert_eq!(code, 0, "{again:#}");
    let after = server.get(&["deployment", "orchestrator", "-n", "payments"]);
    assert_eq!(
        before["metadata"]["generation"], after["metadata"]["generation"],
        "the same manifests do not make a new generation"
    );
}

#[test]
fn a_refused_object_stops_the_run_before_anything_else_is_written() {
    let server = Server::start(30510);
    let dir = server.dir.join("stack");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("refused.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Namespace\nmetadata: { name: refusal }\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: written-only-if-all-pass, namespace: refusal }\ndata: { a: b }\n---\napiVersion: v1\nkind: Service\nmetadata: { name: broken, namespace: refusal }\nspec:\n  ports:\n    - { port: 70000 }\n",
    )
    .expect("written");
    let (code, report) = server.apply(&[&file]);
    assert_eq!(code, 1, "{report:#}");
    let refused: Vec<&Value> = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["result"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{report:#}");
    assert_eq!(refused[0]["object"], "Service refusal/broken");
    assert_eq!(refused[0]["source"], file.display().to_string());
    // The server's own words, from its validation.
    let message = refused[0]["message"].as_str().expect("message");
    assert!(message.contains("70000"), "{message}");
    // The namespace was written first (a prerequisite); the valid ConfigMap was not.
    let (ok, _) = server.kubectl(&["get", "namespace", "refusal"]);
    assert!(ok);
    let (ok, text) = server.kubectl(&[
        "get",
        "configmap",
        "written-only-if-all-pass",
        "-n",
        "refusal",
    ]);
    assert!(!ok && text.contains("NotFound"), "{text}");
}

#[test]
fn the_stacks_keep_the_house_rules_and_a_workload_that_breaks_one_is_named() {
    let output = paytool()
        .args(["kube", "check", "--json"])
        .output()
        .expect("check runs");
    let checked: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(output.status.success(), "{checked:#}");
    assert_eq!(checked["violations"].as_array().map(Vec::len), Some(0));
    assert!(checked["workloads"].as_u64() >= Some(3), "{checked}");

    let dir = std::env::temp_dir().join(format!("paytool-kube-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("root.yaml");
    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: rooted, namespace: x }\nspec:\n  selector: { matchLabels: { a: b } }\n  template:\n    metadata: { labels: { a: b } }\n    spec:\n      containers:\n        - { name: app, image: 'nginx:latest' }\n",
    )
    .expect("written");
    let output = paytool()
        .args(["kube", "check"])
        .arg(&file)
        .output()
        .expect("check runs");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    for rule in [
        "runAsNonRoot",
        "no readinessProbe",
        "not pinned",
        "no limits.memory",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains("Deployment x/rooted, container app") && l.contains(rule)),
            "{rule}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn plan(root: &Path, output: &Path) -> Value {
    let result = paytool()
        .env("PAYTOOL_PROJECT_ROOT", root)
        .args(["up", "--runtime", "kind", "--dry-run", "--json", "--output"])
        .arg(output)
        .output()
        .expect("paytool up --runtime kind --dry-run runs");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    serde_json::from_slice(&result.stdout).expect("the plan as JSON")
}

#[test]
fn the_app_of_apps_renders_exactly_the_expected_applications_in_wave_order() {
    let output = std::env::temp_dir().join(format!("paytool-kind-plan-{}", std::process::id()));
    let plan = plan(&project(), &output);
    let apps = plan["apps"].as_array().expect("apps");
    let names: Vec<&str> = apps.iter().filter_map(|a| a["name"].as_str()).collect();
    // Infrastructure first, then the services (one wave, by name, as Argo CD orders them).
    assert_eq!(
        names,
        [
            "namespaces",
            "secrets",
            "ingress-nginx",
            "delivery",
            "kafka",
            "postgres",
            "keycloak",
            "observability",
            "rollouts",
            "consumer-api",
            "merchant-api",
            "orchestrator"
        ]
    );
    let wave = |name: &str| {
        apps.iter()
            .find(|a| a["name"] == name)
            .and_then(|a| a["wave"].as_i64())
            .expect("a wave")
    };
    assert!(wave("namespaces") < wave("secrets"));
    assert!(wave("secrets") < wave("ingress-nginx"));
    assert!(wave("ingress-nginx") < wave("postgres"));
    assert!(wave("postgres") < wave("keycloak"));
    assert_eq!(wave("kafka"), wave("postgres"));
    assert_eq!(wave("keycloak"), wave("observability"));
    assert!(wave("observability") < wave("rollouts"));
    for service in ["consumer-api", "merchant-api", "orchestrator"] {
        assert!(wave("rollouts") < wave(service), "{service}");
    }
    // Every service with a kind overlay has its Application, and every Application's stack
    // renders to something.
    for app in apps {
        assert!(app["objects"].as_u64() > Some(0), "{app}");
        assert!(project()
            .join(app["path"].as_str().expect("path"))
            .join("kustomization.yaml")
            .is_file());
    }
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "cluster",
            "certificate",
            "images",
            "bootstrap",
            "secrets",
            "git",
            "wave",
            "wave",
            "wave",
            "wave",
            "wave",
            "wave",
            "wave"
        ]
    );
    // The manifests written hold the root, the Applications and every stack's objects.
    let manifests = std::fs::read_to_string(output.join("manifests.yaml")).expect("written");
    let documents = manifests.matches("\n# Source: ").count();
    assert_eq!(
        documents as u64,
        1 + apps.len() as u64 + plan["objects"].as_u64().expect("objects")
    );
    let _ = std::fs::remove_dir_all(&output);
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=paytool",
            "-c",
            "user.email=paytool@local.test",
        ])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copied");
        }
    }
}

#[test]
fn a_reverted_change_renders_back_to_the_previous_manifests_byte_for_byte() {
    // A stacks repository as Argo CD would see it: the kind stacks, the dashboards they take
    // from stacks/observability, and each service's deploy/.
    let root = std::env::temp_dir().join(format!("paytool-gitops-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_tree(&project().join("stacks/kind"), &root.join("stacks/kind"));
    copy_tree(
        &project().join("stacks/observability"),
        &root.join("stacks/observability"),
    );
    for service in ["consumer-api", "merchant-api", "orchestrator"] {
        copy_tree(
            &project().join("services").join(service).join("deploy"),
            &root.join("services").join(service).join("deploy"),
        );
    }
    git(&root, &["init", "-q", "-b", "main"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "stacks"]);
    let rendered = |n: u32| {
        let output = root.join(format!("out-{n}"));
        plan(&root, &output);
        let text = std::fs::read(output.join("manifests.yaml")).expect("written");
        std::fs::remove_dir_all(&output).expect("removed");
        text
    };
    let first = rendered(1);

    let overlay = root.join("services/orchestrator/deploy/overlays/local/kustomization.yaml");
    let text = std::fs::read_to_string(&overlay).expect("overlay");
    let changed = text.replacen("newTag: unreleased", "newTag: 3f2a1c9", 1);
    assert_ne!(text, changed);
    std::fs::write(&overlay, changed).expect("written");
    git(&root, &["commit", "-q", "-am", "orchestrator 3f2a1c9"]);
    let second = rendered(2);
    assert_ne!(first, second, "the change shows in the manifests");
    assert!(String::from_utf8_lossy(&second).contains("paytool/orchestrator:3f2a1c9"));

    git(&root, &["revert", "--no-edit", "HEAD"]);
    assert_eq!(rendered(3), first, "the revert renders back byte for byte");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_files_made_from_the_local_runtimes_sources_are_current() {
    for (path, fresh) in paytool::kube::kind::generated(&project()).expect("made") {
        let file = project().join(path);
        if std::env::var_os("PAYTOOL_WRITE_GOLDEN").is_some() {
            std::fs::write(&file, &fresh).expect("written");
        }
        let kept = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            kept == fresh,
            "{path} is stale: write it again with PAYTOOL_WRITE_GOLDEN=1 cargo test -p paytool --test kube the_files_made"
        );
    }
}

#[test]
fn the_kind_realm_is_the_local_template_with_its_secrets_left_to_the_pod() {
    let kept = std::fs::read_to_string(project().join(paytool::kube::kind::REALM_FILE))
        .expect("the realm file");
    let realm: Value = serde_json::from_str(&kept).expect("JSON");
    assert_eq!(realm["realm"], "paytool");
    // Every confidential client's secret is a placeholder, none a value.
    let clients = realm["clients"].as_array().expect("clients");
    let secrets: Vec<&str> = clients
        .iter()
        .filter_map(|c| c["secret"].as_str())
        .collect();
    assert!(secrets.len() >= 6, "{secrets:?}");
    assert!(
        secrets
            .iter()
            .all(|s| s.starts_with("${PAYTOOL_CLIENT_SECRET_") && s.ends_with('}')),
        "{secrets:?}"
    );
    // The public URLs are the standard port's.
    assert!(kept.contains("https://wallet.local.test/") && !kept.contains("local.test:"));
}

#[test]
fn the_kind_collectors_configuration_is_valid_for_the_collector_the_local_runtime_builds() {
    // The same collector version and components (scripts/install-observability.sh, which
    // `paytool setup` runs before the tests).
    let collector =
        paytool::runtime::project::cache_dir().join("observability/bin/paytool-otelcol");
    // The traces-and-metrics collector, and the logs collector on each node.
    for config in ["collector-config.yaml", "logs-collector-config.yaml"] {
        let output = Command::new(&collector)
            .arg("validate")
            .arg(format!(
                "--config={}",
                project()
                    .join("stacks/kind/platform/observability")
                    .join(config)
                    .display()
            ))
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", collector.display()));
        assert!(
            output.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_property_an_external_secret_names_is_one_the_store_secret_has() {
    // The store's keys, whatever the installation's values.
    let secrets: paytool::runtime::home::Secrets = serde_json::from_value(serde_json::json!({
        "postgres_superuser": "", "db_orchestrator": "", "db_consumer_api": "",
        "db_merchant_api": "", "db_keycloak": "", "keycloak_admin": "",
        "client_merchant_dashboard": "", "client_wallet_web": "", "client_consumer_api": "",
        "client_merchant_api": "", "client_orchestrator": "", "client_operator": "",
        "payment_code_key": "",
    }))
    .expect("secrets");
    let store: Vec<&str> = paytool::kube::kind::store_properties(&secrets)
        .expect("made")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let mut named = 0;
    for app in paytool::kube::kind::apps(&project()).expect("apps") {
        for manifest in paytool::kube::apply::render(&project().join(&app.path)).expect("renders") {
            if manifest.kind() != "ExternalSecret" {
                continue;
            }
            assert_eq!(
                manifest.object["spec"]["secretStoreRef"]["name"],
                "paytool",
                "{}",
                manifest.id()
            );
            for data in manifest.object["spec"]["data"].as_array().expect("data") {
                let property = data["remoteRef"]["property"].as_str().expect("property");
                assert!(store.contains(&property), "{}: {property}", manifest.id());
                named += 1;
            }
        }
    }
    // The three services' and the platform's (Keycloak's, PostgreSQL's four roles).
    assert!(named >= 20, "{named}");
}

#[test]
fn without_kind_or_an_engine_up_down_and_status_for_kind_say_in_one_line_what_is_missing() {
    // This machine has neither (docs/kubernetes.md); a PATH without them makes that so anywhere.
    let empty = tempfile::tempdir().expect("a temporary directory");
    for args in [
        &["up", "--runtime", "kind"][..],
        &["down", "--runtime", "kind"][..],
        &["status", "--runtime", "kind"][..],
    ] {
        let output = paytool()
            .args(args)
            .env("PATH", empty.path())
            .output()
            .expect("paytool runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].contains("kind") && lines[0].contains("Docker engine"),
            "{args:?}: {stderr}"
        );
    }
}
