use crate::helpers::spawn_app;

#[tokio::test]
async fn the_service_is_ready_when_its_database_answers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["service"], "orchestrator");
    assert_eq!(body["checks"]["database"], "ok");
}

#[tokio::test]
async fn the_service_is_not_ready_when_its_database_is_unreachable() {
    // Port 1 on loopback refuses connections: the process is live but must not claim readiness.
    let settings = orchestrator::configuration::Settings {
        http: paykit::config::HttpSettings::default(),
        database: paykit::db::DatabaseSettings {
            url: "postgres://nobody:nothing@127.0.0.1:1/nowhere"
                .to_string()
                .into(),
            max_connections: 1,
            acquire_timeout_ms: 300,
            statement_timeout_ms: 300,
        },
    };
    let application = orchestrator::startup::Application::build(settings)
        .await
        .expect("builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
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
