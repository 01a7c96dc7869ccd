use crate::helpers::spawn_app;

#[tokio::test]
async fn the_service_is_ready_when_its_database_answers() {
    let app = spawn_app().await;
    paykit::testing::assert_ready_with_database(&app.client, &app.address, "consumer-api").await;
}
