use consumer_api::configuration::Settings;
use consumer_api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = paykit::telemetry::init(consumer_api::SERVICE);
    let settings: Settings = paykit::config::load()?;
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "listening");
    application.run_until_stopped().await?;
    Ok(())
}
