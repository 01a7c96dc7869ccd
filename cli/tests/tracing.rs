//! One payment through the running test platform's gateway is one trace in Jaeger, from the
//! gateway's span (exported by paytool's agent from nginx's log) through consumer-api,
//! merchant-api and the orchestrator's saga, across Kafka to merchant-api's consumer, read
//! back with `paytool trace PAYMENT_ID --json`; and a caller's sampling decision kept.

use e2e::gateway::Gateway;
use serde_json::Value;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

/// The consumer's span reaches Jaeger last (after Kafka); each `paytool trace` waits for the
/// trace to settle, and the test asks again a bounded number of times.
const TRACE_ATTEMPTS_MAX: u32 = 10;

fn paytool_trace(payment_id: &str) -> (i32, Value, String) {
    let home = paykit::testing::platform_status()["home"]
        .as_str()
        .expect("the status names the installation's home")
        .to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_paytool"))
        .args([
            "--home",
            &home,
            "trace",
            payment_id,
            "--json",
            "--wait-ms",
            "10000",
        ])
        .output()
        .expect("paytool runs");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let trace = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), trace, stderr)
}

/// merchant-api's consumer of the payment's event (span kind consumer, topic payments.v1).
fn is_merchant_consumer(span: &Value) -> bool {
    span["service"] == "merchant-api"
        && span["attributes"]["span.kind"] == "consumer"
        && span["attributes"]["messaging.destination.name"] == "payments.v1"
}

fn has_consumer_span(trace: &Value) -> bool {
    trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .any(is_merchant_consumer)
}

#[tokio::test]
async fn one_payment_through_the_gateway_is_one_trace_from_the_gateway_to_the_merchant_s_consumer()
{
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 2, 1));
    let merchant = gateway.register_merchant().await;
    let consumer = gateway.register_consumer().await;
    let payment = gateway
        .pay_a_dynamic_qr(&consumer, &merchant, 1_000, 400)
        .await;
    let payment_id = payment["id"]
        .as_str()
        .expect("the payment's id")
        .to_string();

    let mut trace = Value::Null;
    for _ in 0..TRACE_ATTEMPTS_MAX {
        let (code, found, stderr) = paytool_trace(&payment_id);
        if code == 0 && has_consumer_span(&found) {
            trace = found;
            break;
        }
        eprintln!("not yet: exit {code}: {stderr}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        has_consumer_span(&trace),
        "no trace with merchant-api's consumer for payment {payment_id}: {trace}"
    );
    let spans = trace["spans"].as_array().expect("spans");
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().expect("span_id"), s))
        .collect();

    // One root, the gateway's, and every other span's parent is in the trace.
    let roots: Vec<&Value> = spans
        .iter()
        .filter(|s| s["parent_span_id"].is_null())
        .collect();
    assert_eq!(roots.len(), 1, "one root span: {trace}");
    assert_eq!(roots[0]["service"], "gateway", "{trace}");
    assert_eq!(roots[0]["name"], "POST api.local.test", "{trace}");
    assert_eq!(
        roots[0]["attributes"]["url.path"], "/v1/payments",
        "{trace}"
    );
    for span in spans {
        assert_eq!(span["parent_missing"], false, "{span}");
        if let Some(parent) = span["parent_span_id"].as_str() {
            let parent = by_id[parent];
            assert!(
                parent["start_offset_us"].as_u64() <= span["start_offset_us"].as_u64(),
                "a child does not start before its parent: {parent} / {span}"
            );
        }
    }
    // consumer-api's request span is the gateway's child: the traceparent nginx sent.
    let consumer_api = spans
        .iter()
        .find(|s| s["service"] == "consumer-api" && s["parent_span_id"] == roots[0]["span_id"])
        .unwrap_or_else(|| panic!("consumer-api's span under the gateway's: {trace}"));
    assert_eq!(consumer_api["depth"], 1);

    // From merchant-api's consumer of the payment's event back to the root: Kafka's headers
    // carried the saga's context, which came over HTTP from consumer-api and the gateway.
    let consumed = spans
        .iter()
        .find(|s| is_merchant_consumer(s))
        .expect("the consumer's span");
    assert_eq!(
        consumed["attributes"]["messaging.consumer.group.name"],
        "merchant-api.payments"
    );
    let mut chain = vec![consumed];
    while let Some(parent) = chain.last().and_then(|s| s["parent_span_id"].as_str()) {
        chain.push(by_id[parent]);
        assert!(chain.len() <= spans.len(), "no cycle: {trace}");
    }
    let services: Vec<&str> = chain
        .iter()
        .rev()
        .map(|s| s["service"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(services.first(), Some(&"gateway"), "{services:?}");
    assert_eq!(services.get(1), Some(&"consumer-api"), "{services:?}");
    assert_eq!(services.last(), Some(&"merchant-api"), "{services:?}");
    let saga = chain
        .iter()
        // A payment in one commit (or a group's) is `saga.commit`; a stepped saga `saga.drive`.
        .find(|s| {
            s["service"] == "orchestrator"
                && (s["name"] == "saga.commit" || s["name"] == "saga.drive")
        })
        .unwrap_or_else(|| {
            panic!("the saga's span is an ancestor of the consumer's: {services:?}")
        });
    assert_eq!(saga["attributes"]["saga.id"], payment_id.as_str());
    assert_eq!(saga["attributes"]["saga.state"], "completed", "{saga}");
}

/// Jaeger's query API on the test platform.
fn jaeger_url() -> String {
    let status = paykit::testing::platform_status();
    let port = status["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == "jaeger")
        .and_then(|c| c["ports"]["query"].as_u64())
        .unwrap_or_else(|| panic!("jaeger's query port in {status}"));
    format!("http://127.0.0.1:{port}")
}

/// The services of the spans Jaeger holds for a trace id (none: not there).
async fn services_in_jaeger(trace_id: &str) -> Vec<String> {
    let found: Value = reqwest::get(format!("{}/api/traces/{trace_id}", jaeger_url()))
        .await
        .expect("jaeger answers")
        .json()
        .await
        .unwrap_or(Value::Null);
    let processes = &found["data"][0]["processes"];
    found["data"][0]["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .filter_map(|s| s["processID"].as_str())
                .filter_map(|p| processes[p]["serviceName"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_caller_s_unsampled_trace_is_not_kept_and_its_sampled_one_is() {
    let gateway = Gateway::from(Ipv4Addr::new(127, 0, 2, 2));
    let trace = |n: u8| format!("{:030x}{n:02x}", uuid::Uuid::new_v4().as_u128() >> 8);
    let (unsampled, sampled) = (trace(0), trace(1));
    // The unsampled one first: once the sampled one is in Jaeger, the other would be too,
    // had it been sent on.
    for (trace_id, flags) in [(&unsampled, "00"), (&sampled, "01")] {
        let answer = gateway
            .client
            .get(gateway.url("api", "/v1/wallet"))
            .header(
                "traceparent",
                format!("00-{trace_id}-00f067aa0ba902b7-{flags}"),
            )
            .send()
            .await
            .expect("the gateway answers");
        assert_eq!(answer.status(), 401, "no token: the gateway's own answer");
    }
    let mut seen = Vec::new();
    for _ in 0..TRACE_ATTEMPTS_MAX * 4 {
        seen = services_in_jaeger(&sampled).await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen.contains(&"gateway".to_string()),
        "the sampled trace's gateway span reached Jaeger: {seen:?}"
    );
    assert_eq!(
        services_in_jaeger(&unsampled).await,
        Vec::<String>::new(),
        "the caller's unsampled trace was not kept"
    );
}
