//! Every component's log in VictoriaLogs, on the running test platform of scripts/test.sh: a
//! payment's lines in every service it crossed found by its trace id (`paytool logs --trace`),
//! and the web UI at `logs.local.test` open only to a person who signs in with the realm role
//! `operator` (the gateway asks the sign-in proxy; the proxy sends the browser through
//! Keycloak's real login form, which this test fills in as a browser would); and the trace
//! viewer at `traces.local.test`, behind the same sign-in, drawing the payment's trace from the
//! trace id its log lines carry.

use e2e::gateway::Gateway;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

/// Lines reach VictoriaLogs a second or two after they are written (the collector reads every
/// half second and sends each second); the consumer's line comes after Kafka's hop.
const LINES_WAIT_MS: u64 = 30_000;

fn home() -> String {
    paykit::testing::platform_status()["home"]
        .as_str()
        .expect("the status names the installation's home")
        .to_string()
}

fn paytool(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_paytool"))
        .arg("--home")
        .arg(home())
        .args(args)
        .output()
        .expect("paytool runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// The trace id of a payment, from Jaeger (`paytool trace`).
fn trace_id_of(payment_id: &str) -> String {
    let (code, stdout, stderr) = paytool(&["trace", payment_id, "--json", "--wait-ms", "15000"]);
    assert_eq!(code, 0, "paytool trace: {stderr}");
    let trace: Value = serde_json::from_str(&stdout).expect("the trace as JSON");
    trace["trace_id"].as_str().expect("a trace id").to_string()
}

/// A QR payment through the gateway from `source`: its id and its trace's id.
async fn a_payment(source: Ipv4Addr) -> (String, String) {
    let gateway = Gateway::from(source);
    let merchant = gateway.register_merchant().await;
    let consumer = gateway.register_consumer().await;
    let payment = gateway
        .pay_a_dynamic_qr(&consumer, &merchant, 1_000, 400)
        .await;
    let payment_id = payment["id"]
        .as_str()
        .expect("the payment's id")
        .to_string();
    let trace_id = trace_id_of(&payment_id);
    (payment_id, trace_id)
}

#[tokio::test]
async fn a_payments_lines_in_every_service_it_crossed_are_found_by_its_trace_id() {
    let (_, trace_id) = a_payment(Ipv4Addr::new(127, 0, 6, 1)).await;

    let wanted: BTreeSet<&str> = ["gateway", "consumer-api", "merchant-api", "orchestrator"].into();
    let started = Instant::now();
    let (mut seen, mut lines) = (BTreeSet::new(), Vec::new());
    while started.elapsed() < Duration::from_millis(LINES_WAIT_MS) {
        let (code, stdout, stderr) =
            paytool(&["logs", "--trace", &trace_id, "--json", "--wait-ms", "2000"]);
        assert!(
            code == 0 || code == 1,
            "paytool logs: exit {code}: {stderr}"
        );
        lines = stdout
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
            .collect();
        seen = lines
            .iter()
            .filter_map(|line| line["service.name"].as_str().map(str::to_string))
            .collect();
        if wanted.iter().all(|w| seen.contains(*w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seen: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
    assert!(
        wanted.is_subset(&seen),
        "the trace {trace_id}'s lines came from {seen:?}, not all of {wanted:?}"
    );
    for line in &lines {
        assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
    }
    // The gateway's line is the payment's request; merchant-api's consumer handled its event.
    assert!(
        lines.iter().any(|l| l["service.name"] == "gateway"
            && l["_msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("POST ") && m.contains("/v1/payments"))),
        "no gateway line of the payment's request: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["service.name"] == "merchant-api" && l["_msg"] == "event handled"),
        "no line of merchant-api's consumer: {lines:?}"
    );
}

#[test]
fn a_query_victorialogs_cannot_parse_is_refused_with_its_reason_and_exit_code_2() {
    let (code, _, stderr) = paytool(&["logs", "--query", "status:>>", "--since", "5m"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("VictoriaLogs refused the query"),
        "{stderr}"
    );
    let (code, _, stderr) = paytool(&["logs", "--trace", "not-a-trace-id"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("32 hexadecimal digits"), "{stderr}");
}

/// A browser: cookies kept, redirects seen one at a time, the gateway's names on loopback.
fn browser() -> (reqwest::Client, u64) {
    let status = paykit::testing::platform_status();
    let port = status["gateway"]["https_port"].as_u64().expect("a port");
    let ca = std::fs::read(
        status["gateway"]["ca_certificate"]
            .as_str()
            .expect("the CA"),
    )
    .expect("the CA is readable");
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 6, 2)))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("the CA parses"))
        .resolve("logs.local.test", address)
        .resolve("traces.local.test", address)
        .resolve("sso.local.test", address)
        .build()
        .expect("a client");
    (client, port)
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{} without a Location", response.status()))
        .to_string()
}

/// Opens `url` signed in as `username`: the gateway's redirect to the sign-in, its redirect
/// to Keycloak, Keycloak's form filled in, then the callback. The last answer.
async fn open_signed_in(
    client: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let first = client.get(url).send().await.expect("the UI answers");
    assert_eq!(first.status(), 302, "unsigned: {}", first.status());
    let start = location(&first);
    assert!(start.contains("/oauth2/start"), "{start}");
    let to_keycloak = client
        .get(&start)
        .send()
        .await
        .expect("the sign-in answers");
    assert_eq!(to_keycloak.status(), 302);
    let login = location(&to_keycloak);
    assert!(
        login.contains("sso.local.test") && login.contains("client_id=operations"),
        "{login}"
    );
    let form = client
        .get(&login)
        .send()
        .await
        .expect("Keycloak answers")
        .text()
        .await
        .expect("its page");
    let action = form
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the login form's action")
        .replace("&amp;", "&");
    let back = client
        .post(&action)
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("Keycloak takes the form");
    assert_eq!(back.status(), 302, "the credentials were refused");
    let callback = location(&back);
    // Back to the host the browser asked for.
    let host = url
        .split("//")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("a host in the URL");
    assert!(
        callback.contains(host) && callback.contains("/oauth2/callback"),
        "{callback}"
    );
    let signed = client
        .get(&callback)
        .send()
        .await
        .expect("the callback answers");
    if signed.status() != 302 {
        return signed;
    }
    client
        .get(location(&signed))
        .send()
        .await
        .expect("the UI answers")
}

#[tokio::test]
async fn the_logs_web_ui_opens_for_a_signed_in_operator_and_for_nobody_else() {
    let (client, port) = browser();
    let ui = format!("https://logs.local.test:{port}/select/vmui/");
    let (code, stdout, stderr) = paytool(&["status", "--json", "--show-secrets"]);
    assert!(code == 0 || code == 1, "{stderr}");
    let connections: Value = serde_json::from_str(&stdout).expect("status as JSON");
    let operations = &connections["connections"]["operations"];
    assert_eq!(
        operations["urls"]["logs"],
        format!("https://logs.local.test:{port}")
    );
    let password = operations["password"]
        .as_str()
        .expect("the operator's password");

    let page = open_signed_in(&client, &ui, "operator", password).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("the UI's page");
    assert!(
        html.contains("<!DOCTYPE html>") || html.contains("<!doctype html>"),
        "{html}"
    );
    // Signed in, the API behind the UI answers too: the sign-in's own lines are there.
    let api = client
        .post(format!(
            "https://logs.local.test:{port}/select/logsql/query"
        ))
        .form(&[
            ("query", "_time:1h _stream:{service.name=\"sign-in\"}"),
            ("limit", "1"),
        ])
        .send()
        .await
        .expect("the API answers");
    assert_eq!(api.status(), 200);

    // A consumer of the platform has an account in the same realm, but not the role.
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 6, 3));
    let email = e2e::unique_email("not-an-operator");
    let registered = gateway
        .post(
            "api",
            "/v1/consumers",
            None,
            serde_json::json!({ "email": email, "password": e2e::gateway::PASSWORD, "name": "Not Operator" }),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let (stranger, _) = browser();
    let refused = open_signed_in(&stranger, &ui, &email, e2e::gateway::PASSWORD).await;
    assert_eq!(
        refused.status(),
        403,
        "a consumer without the operator role got in"
    );
    let again = stranger.get(&ui).send().await.expect("the UI answers");
    assert_eq!(again.status(), 302, "no session was left for the consumer");
}

#[tokio::test]
async fn the_trace_viewer_draws_a_payments_trace_from_the_trace_id_its_log_lines_carry() {
    let (payment_id, trace_id) = a_payment(Ipv4Addr::new(127, 0, 6, 4)).await;
    // The id as a person finds it: on the payment's log lines.
    let (code, stdout, stderr) =
        paytool(&["logs", "--trace", &trace_id, "--json", "--wait-ms", "15000"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&trace_id));

    let (client, port) = browser();
    let (_, status, _) = paytool(&["status", "--json", "--show-secrets"]);
    let status: Value = serde_json::from_str(&status).expect("status as JSON");
    let password = status["connections"]["operations"]["password"]
        .as_str()
        .expect("the operator's password");
    let viewer = format!("https://traces.local.test:{port}/traces/{trace_id}");
    let page = open_signed_in(&client, &viewer, "operator", password).await;
    assert_eq!(page.status(), 200);
    let mut html = page.text().await.expect("the page");
    assert!(html.contains(&format!("Trace {trace_id}")), "{html}");
    // Spans reach Jaeger in batches (the gateway's through paytool's agent): the page is asked
    // again, within a bound, until every service's span is there.
    let services = ["gateway", "consumer-api", "merchant-api", "orchestrator"];
    let started = Instant::now();
    while !services
        .iter()
        .all(|s| html.contains(&format!("data-service=\"{s}\"")))
        && started.elapsed() < Duration::from_millis(LINES_WAIT_MS)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        html = client
            .get(&viewer)
            .send()
            .await
            .expect("the viewer answers")
            .text()
            .await
            .expect("the page");
    }
    for service in services {
        assert!(
            html.contains(&format!("data-service=\"{service}\"")),
            "no span of {service}: {html}"
        );
    }
    // A payment's id leads to its trace too.
    let search = client
        .get(format!("https://traces.local.test:{port}/?q={payment_id}"))
        .send()
        .await
        .expect("the viewer answers");
    assert!(search.status().is_redirection(), "{}", search.status());
    assert_eq!(location(&search), format!("/traces/{trace_id}"));
    // Not a trace id: refused, saying what one is.
    let refused = client
        .get(format!(
            "https://traces.local.test:{port}/traces/not-a-trace"
        ))
        .send()
        .await
        .expect("the viewer answers");
    assert_eq!(refused.status(), 400);
}
