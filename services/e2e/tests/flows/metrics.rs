//! Each service's `/metrics`: RED by route template, the pool, the outbox, consumers, and the
//! orchestrator's sagas and money by state and currency, after real payments.

use crate::helpers::World;

async fn scrape(world: &World, base: &str) -> String {
    let response = world
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert!(response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    response.text().await.expect("text")
}

/// The value of the first sample whose line starts with `name{` and has every label in `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn every_service_exposes_red_metrics_by_route_template_and_the_ledger_s_outcomes() {
    let world = World::new().await;
    let merchant = world.merchant().await;
    let consumer = world.consumer(5_000).await;
    let request = world.payment_request(&merchant, Some(1_200)).await;
    let paid = world.pay_request(&consumer, &request).await;
    // The list is fed by the merchant's consumer: once it shows the payment, it was consumed.
    world
        .merchant_transactions_with(&merchant, "", paid["id"].as_str().expect("id"))
        .await;
    let unknown = world
        .consumer_get(&consumer, &format!("/v1/payments/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(unknown.status(), 404);

    let consumer_metrics = scrape(&world, &world.platform.consumer_api).await;
    // Templates, never raw ids: the label set stays bounded.
    assert!(
        sample(
            &consumer_metrics,
            "http_server_requests_total",
            &[
                r#"route="/v1/payments/{id}""#,
                r#"status="404""#,
                r#"method="GET""#
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{consumer_metrics}"
    );
    assert!(!consumer_metrics.contains(&paid["id"].as_str().expect("id").to_string()));
    assert!(sample(
        &consumer_metrics,
        "http_server_request_duration_seconds_bucket",
        &[r#"route="/v1/payments""#, r#"le="0.3""#]
    )
    .is_some());
    for name in [
        "db_pool_connections",
        "db_pool_max_connections",
        "outbox_unpublished_events",
        "outbox_oldest_unpublished_age_seconds",
    ] {
        assert!(sample(&consumer_metrics, name, &[]).is_some(), "{name}");
    }

    let orchestrator_metrics = scrape(&world, &world.platform.orchestrator).await;
    assert!(
        sample(
            &orchestrator_metrics,
            "sagas_finished_total",
            &[
                r#"kind="payment""#,
                r#"state="completed""#,
                r#"currency="JPY""#
            ]
        )
        .is_some_and(|n| n >= 1.0),
        "{orchestrator_metrics}"
    );
    assert!(sample(
        &orchestrator_metrics,
        "saga_amount_minor_total",
        &[
            r#"kind="payment""#,
            r#"state="completed""#,
            r#"currency="JPY""#
        ]
    )
    .is_some_and(|n| n >= 1_200.0));
    assert!(sample(
        &orchestrator_metrics,
        "saga_transitions_total",
        &[r#"kind="payment""#, r#"state="completed""#]
    )
    .is_some_and(|n| n >= 1.0));
    // Every outcome is there from the start, at 0 until it happens (so that Prometheus sees a
    // first payment's step): one no flow here makes.
    assert_eq!(
        sample(
            &orchestrator_metrics,
            "sagas_finished_total",
            &[r#"kind="top_up""#, r#"state="voided""#, r#"currency="CHF""#]
        ),
        Some(0.0)
    );

    let merchant_metrics = scrape(&world, &world.platform.merchant_api).await;
    assert!(
        sample(
            &merchant_metrics,
            "events_consumed_total",
            &[r#"outcome="applied""#]
        )
        .is_some_and(|n| n >= 1.0),
        "{merchant_metrics}"
    );
    assert!(sample(&merchant_metrics, "event_consumer_lag_seconds_count", &[]).is_some());
}
