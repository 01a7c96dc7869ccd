//! Readiness tells the truth about the database: a live process whose database does not answer
//! is not ready, so the supervisor and load balancers keep traffic away from it.

async fn serve(pool: sqlx::PgPool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("bound").port()
    );
    tokio::spawn(paykit::server::serve(
        listener,
        paykit::health::router("health-test", pool),
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
