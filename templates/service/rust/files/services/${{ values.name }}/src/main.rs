use ${{ values.crate }}::configuration::Settings;
use ${{ values.crate }}::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = paykit::telemetry::init(${{ values.crate }}::SERVICE);
    let settings: Settings = paykit::config::load()?;
    let application = Application::build(settings).await?;
    tracing::info!(port = application.port(), "listening");
    application.run_until_stopped().await?;
    Ok(())
}
