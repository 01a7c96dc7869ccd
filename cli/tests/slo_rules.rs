//! The Prometheus rules generated from `stacks/observability/slos.yaml`, checked by Prometheus's
//! own `promtool` (Debian package `prometheus`): `promtool check rules` on the generated file
//! (at real and scaled windows), and `promtool test rules` on
//! `stacks/observability/tests/burn_rate_test.yaml`, which feeds synthetic series and asserts
//! when the burn-rate alerts fire.
//!
//! The generator is `paytool::observe::slo_rules`; its own unit tests run with the library's.

use paytool::observe::slo_rules as slo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROMTOOL: &str = "/usr/bin/promtool";

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn project_slos() -> slo::SloFile {
    slo::load(&project_root().join(slo::SLOS_PATH)).expect("the project's SLOs load")
}

/// Runs promtool; a machine without it fails the test rather than skipping it.
fn promtool(dir: &Path, args: &[&str]) -> Output {
    assert!(
        Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} is missing: `apt-get install prometheus` (the Debian package ships promtool)"
    );
    Command::new(PROMTOOL)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs")
}

fn assert_success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout + &stderr
}

/// Writes the rules into a fresh directory as `slo-rules.yaml` (the name the unit-test file
/// refers to) and returns the directory.
fn write_rules(rules: &slo::RuleFile) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("paytool-slo-")
        .tempdir()
        .expect("a temporary directory");
    let yaml = rules.to_yaml().expect("the rules serialise");
    std::fs::write(dir.path().join("slo-rules.yaml"), yaml).expect("write the rules");
    dir
}

#[test]
fn the_rules_generated_from_the_projects_slos_pass_promtool_check() {
    let slos = project_slos();
    let dir = write_rules(&slo::rules(&slos));
    let out = assert_success(
        &promtool(dir.path(), &["check", "rules", "slo-rules.yaml"]),
        "promtool check rules",
    );
    // Per SLO: five error ratios, the objective and three alerts.
    let expected = slos.slos.len() * (slo::WINDOWS.len() + 1 + slo::BURN_ALERTS.len());
    assert!(
        out.contains(&format!("SUCCESS: {expected} rules found")),
        "unexpected promtool output:\n{out}"
    );
}

#[test]
fn the_rules_scaled_for_tests_pass_promtool_check_too() {
    let dir = write_rules(&slo::scaled_rules(&project_slos(), 60).expect("scale 60"));
    let out = assert_success(
        &promtool(dir.path(), &["check", "rules", "slo-rules.yaml"]),
        "promtool check rules (scaled)",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The rules without their annotations, for `promtool test rules`: it compares the
/// annotations of every firing alert too, and the tests are about when alerts fire, not their
/// wording (which `promtool check rules` still validates, templates included).
fn without_annotations(mut rules: slo::RuleFile) -> slo::RuleFile {
    for rule in rules.groups.iter_mut().flat_map(|group| &mut group.rules) {
        if let slo::Rule::Alert { annotations, .. } = rule {
            annotations.clear();
        }
    }
    rules
}

#[test]
fn the_burn_rate_alerts_fire_when_promtools_unit_tests_say_they_should() {
    let dir = write_rules(&without_annotations(slo::rules(&project_slos())));
    let tests = project_root().join("stacks/observability/tests/burn_rate_test.yaml");
    std::fs::copy(&tests, dir.path().join("burn_rate_test.yaml")).expect("copy the tests");
    let out = assert_success(
        &promtool(dir.path(), &["test", "rules", "burn_rate_test.yaml"]),
        "promtool test rules burn_rate_test.yaml",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// At scale 60 an hour of data is a minute: after a healthy minute, a 2% error ratio pages
/// (1h and 5m windows, now 1m and 5s) within the next minute, as a live test would watch.
#[test]
fn scaled_by_sixty_the_fast_page_fires_within_two_minutes() {
    let scaled = slo::scaled_rules(&project_slos(), 60).expect("scale 60");
    let dir = write_rules(&without_annotations(scaled));
    // One sample a second: 100 requests a second for a minute, then 2% of them fail. The 1m
    // error ratio passes 1.44% after 44 s of errors (1m44s), and the alert fires 2 s later.
    let tests = r#"
rule_files: [slo-rules.yaml]
evaluation_interval: 1s
tests:
  - interval: 1s
    input_series:
      - series: 'http_server_requests_total{job="consumer-api",method="POST",route="/v1/payments",status="201"}'
        values: '0+100x60 6098+98x119'
      - series: 'http_server_requests_total{job="consumer-api",method="POST",route="/v1/payments",status="500"}'
        values: '0x60 2+2x119'
    alert_rule_test:
      - eval_time: 1m43s
        alertname: SLOErrorBudgetBurnFast
        exp_alerts: []
      - eval_time: 1m46s
        alertname: SLOErrorBudgetBurnFast
        exp_alerts:
          - exp_labels: {severity: page, slo: payment-creation-availability}
"#;
    std::fs::write(dir.path().join("scaled_test.yaml"), tests).expect("write the tests");
    let out = assert_success(
        &promtool(dir.path(), &["test", "rules", "scaled_test.yaml"]),
        "promtool test rules scaled_test.yaml",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_local_runtimes_recording_rules_pass_promtool_check() {
    let path = project_root().join("stacks/local/prometheus/recording-rules.yaml");
    let out = assert_success(
        &promtool(
            &project_root(),
            &["check", "rules", path.to_str().expect("a UTF-8 path")],
        ),
        "promtool check rules recording-rules.yaml",
    );
    assert!(
        out.contains("6 rules found"),
        "unexpected promtool output:\n{out}"
    );
}
