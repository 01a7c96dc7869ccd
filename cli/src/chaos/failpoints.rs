//! The services' failpoints (`paykit::failpoints`), set and taken off through each service
//! instance's `/admin/failpoints`, with the token of paytool's own service account
//! (`paytool-operator`, realm role `admin`).

use crate::runtime::components::keycloak::client_token;
use crate::runtime::components::ComponentName;
use crate::runtime::home::Home;
use crate::runtime::state::RuntimeState;
use serde_json::Value;
use std::time::Duration;

/// One admin call's bound.
const CALL_TIMEOUT_MS: u64 = 5_000;

/// An authenticated client of the services' admin endpoints.
pub struct Admin {
    http: reqwest::Client,
    token: String,
}

impl Admin {
    pub async fn new(home: &Home) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(CALL_TIMEOUT_MS))
            .build()?;
        let secrets = home.secrets()?;
        let token = client_token(&http, home, "paytool-operator", &secrets.client_operator).await?;
        Ok(Self { http, token })
    }

    /// Sets the point's actions on the instance listening on `port`.
    pub async fn set(&self, port: u16, name: &str, actions: &str) -> anyhow::Result<Value> {
        let answer = self
            .http
            .put(url(port, Some(name)))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "actions": actions }))
            .send()
            .await?;
        read(answer).await
    }

    /// Turns the point off on the instance listening on `port`.
    pub async fn remove(&self, port: u16, name: &str) -> anyhow::Result<()> {
        let answer = self
            .http
            .delete(url(port, Some(name)))
            .bearer_auth(&self.token)
            .send()
            .await?;
        read(answer).await.map(|_| ())
    }

    /// Every point the instance on `port` offers, with its actions now.
    pub async fn list(&self, port: u16) -> anyhow::Result<Value> {
        let answer = self
            .http
            .get(url(port, None))
            .bearer_auth(&self.token)
            .send()
            .await?;
        read(answer).await
    }
}

fn url(port: u16, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("http://127.0.0.1:{port}/admin/failpoints/{name}"),
        None => format!("http://127.0.0.1:{port}/admin/failpoints"),
    }
}

/// The answer's JSON, or its problem's detail as the error.
async fn read(answer: reqwest::Response) -> anyhow::Result<Value> {
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    anyhow::ensure!(
        status.is_success(),
        "{status}: {}",
        body["detail"].as_str().unwrap_or(&text)
    );
    Ok(body)
}

/// The HTTP port of a service instance, from the supervisor's state.
pub fn port_of(home: &Home, component: ComponentName, instance: u8) -> anyhow::Result<u16> {
    RuntimeState::load(home)
        .and_then(|state| {
            state
                .components
                .iter()
                .find(|c| c.name == component && c.instance == instance)
                .and_then(|c| c.ports.get("http").copied())
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no HTTP port in this installation",
                crate::runtime::components::instance_id(component, instance)
            )
        })
}
