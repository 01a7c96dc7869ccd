use consumer_api::configuration::Settings;
use consumer_api::startup::Application;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// Starts the service on port 0 against a fresh database on the real test PostgreSQL.
pub async fn spawn_app() -> TestApp {
    let settings = Settings {
        http: paykit::config::HttpSettings::default(),
        database: paykit::testing::fresh_database().await,
    };
    let application = Application::build(settings)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
    }
}
