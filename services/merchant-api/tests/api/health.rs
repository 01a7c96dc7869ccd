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
    assert_eq!(body["service"], "merchant-api");
    assert_eq!(body["checks"]["database"], "ok");
}
