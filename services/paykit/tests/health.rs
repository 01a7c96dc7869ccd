//! Readiness tells the truth about the database: a live process whose database does not answer
//! is not ready, so the supervisor and load balancers keep traffic away from it.

async fn serve(pool: sqlx::PgPool) -> String {
    serve_readiness(paykit::health::Readiness::new("health-test", pool)).await
}

async fn serve_readiness(readiness: paykit::health::Readiness) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    tokio::spawn(paykit::server::serve(
        listener,
        paykit::health::router(readiness),
    ));
    address
}

#[tokio::test]
async fn a_service_whose_database_is_unreachable_is_live_but_not_ready() {
    // Port 1 on loopback refuses connections.
    let settings = paykit::db::DatabaseSettings {
        url: "postgres://nobody:nothing@127.0.0.1:1/nowhere"
            .to_string()
            .into(),
        max_connections: 1,
        acquire_timeout_ms: 300,
        statement_timeout_ms: 300,
    };
    let address = serve(settings.pool().expect("a lazy pool")).await;
    let client = reqwest::Client::new();
    let live = client
        .get(format!("{address}/health/live"))
        .send()
        .await
        .expect("sent");
    assert_eq!(live.status(), 200);
    let ready = client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 503);
}

#[tokio::test]
async fn a_service_whose_database_answers_is_ready() {
    let settings = paykit::testing::fresh_database().await;
    let address = serve(settings.pool().expect("a pool")).await;
    let ready = reqwest::get(format!("{address}/health/ready"))
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["service"], "health-test");
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn readiness_lists_each_dependencys_circuit_and_fails_while_the_service_drains() {
    let settings = paykit::testing::fresh_database().await;
    let guard = paykit::resilience::Guard::new("orchestrator", paykit::resilience::Policy::SERVICE);
    let readiness = paykit::health::Readiness::new("health-test", settings.pool().expect("a pool"))
        .with_dependency(guard);
    let address = serve_readiness(readiness.clone()).await;
    let ready = reqwest::get(format!("{address}/health/ready"))
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["dependencies"]["orchestrator"]["circuit"], "closed");

    readiness.drain();
    let draining = reqwest::get(format!("{address}/health/ready"))
        .await
        .expect("sent");
    assert_eq!(draining.status(), 503);
    let body: serde_json::Value = draining.json().await.expect("json");
    assert_eq!(body["status"], "draining");
    // Still live: it finishes what it has.
    let live = reqwest::get(format!("{address}/health/live"))
        .await
        .expect("sent");
    assert_eq!(live.status(), 200);
}
