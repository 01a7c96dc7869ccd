//! A service's own Keycloak service account: client-credentials tokens (cached until shortly
//! before they expire) for calling other services, and the realm's user administration that
//! consumer-api and merchant-api need to register people.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Calls to Keycloak give up after this.
const KEYCLOAK_TIMEOUT_MS: u64 = 5_000;
/// A cached token is renewed this long before it expires.
const TOKEN_RENEW_BEFORE_MS: u64 = 30_000;
/// After a renewal failed while the token was still valid, the next try waits this long: calls
/// go on with the valid token instead of each waiting on an unreachable Keycloak.
const TOKEN_RENEW_RETRY_MS: u64 = 5_000;

#[derive(Debug, Clone, Deserialize)]
pub struct KeycloakSettings {
    /// Keycloak on loopback, e.g. `http://127.0.0.1:28080`.
    pub base_url: String,
    pub realm: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum KeycloakError {
    #[error("a user with this username or email exists already")]
    Duplicate,
    /// Keycloak's user profile refused a field (a name with characters it does not allow).
    #[error("{0}")]
    Rejected(String),
    #[error("Keycloak answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("Keycloak cannot be reached: {0}")]
    Unreachable(#[from] reqwest::Error),
}

pub struct ServiceAccount {
    settings: KeycloakSettings,
    http: reqwest::Client,
    token: Mutex<Option<CachedToken>>,
}

/// A service token, when to renew it, and when it stops being valid.
struct CachedToken {
    token: String,
    renew_at: Instant,
    expires_at: Instant,
}

impl ServiceAccount {
    pub fn new(settings: KeycloakSettings) -> anyhow::Result<Self> {
        Ok(Self {
            settings,
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(KEYCLOAK_TIMEOUT_MS))
                .build()?,
            token: Mutex::new(None),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The service account's token: the cached one until it is due for renewal, then a new
    /// one. A renewal that fails while the cached token is still valid is not the caller's
    /// problem: the valid token is answered and the renewal tried again later, so a Keycloak
    /// outage shorter than a token's last [`TOKEN_RENEW_BEFORE_MS`] costs no call.
    pub async fn token(&self) -> Result<String, KeycloakError> {
        let mut cached = self.token.lock().await;
        // Seeded weakness (chaos bench): no cache, a token fetched from Keycloak for every call.
        let uncached = crate::failpoints::weak("paykit.weakness.service-token-not-cached");
        let now = Instant::now();
        if let (Some(current), false) = (cached.as_ref(), uncached) {
            if now < current.renew_at {
                return Ok(current.token.clone());
            }
        }
        match self.fetch_token().await {
            Ok((token, lifetime_ms)) => {
                let now = Instant::now();
                *cached = Some(CachedToken {
                    token: token.clone(),
                    renew_at: now
                        + Duration::from_millis(
                            lifetime_ms.saturating_sub(TOKEN_RENEW_BEFORE_MS).max(1_000),
                        ),
                    expires_at: now + Duration::from_millis(lifetime_ms),
                });
                Ok(token)
            }
            Err(error) => match cached.as_mut() {
                Some(current) if !uncached && Instant::now() < current.expires_at => {
                    tracing::warn!(%error, "service token renewal failed; the current one is still valid");
                    current.renew_at = Instant::now() + Duration::from_millis(TOKEN_RENEW_RETRY_MS);
                    Ok(current.token.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// A new token from Keycloak, and its lifetime.
    async fn fetch_token(&self) -> Result<(String, u64), KeycloakError> {
        let url = format!(
            "{}/realms/{}/protocol/openid-connect/token",
            self.settings.base_url, self.settings.realm
        );
        let response = self
            .http
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.settings.client_id.as_str()),
                ("client_secret", self.settings.client_secret.expose_secret()),
            ])
            .send()
            .await?;
        let body: Value = checked(response).await?.json().await?;
        let token = body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let lifetime_ms = body["expires_in"]
            .as_u64()
            .unwrap_or(60)
            .saturating_mul(1000);
        Ok((token, lifetime_ms))
    }

    /// A cached token, due for renewal now and valid for `valid_ms` more (tests of the renewal).
    #[cfg(feature = "testing")]
    pub async fn cache_token_for_test(&self, token: &str, valid_ms: u64) {
        let now = Instant::now();
        *self.token.lock().await = Some(CachedToken {
            token: token.to_string(),
            renew_at: now,
            expires_at: now + Duration::from_millis(valid_ms),
        });
    }

    fn admin(&self, path: &str) -> String {
        format!(
            "{}/admin/realms/{}{path}",
            self.settings.base_url, self.settings.realm
        )
    }

    /// Creates an enabled user with a password; returns the user's id (the tokens' `sub`).
    pub async fn create_user(
        &self,
        email: &str,
        password: &str,
        name: &str,
    ) -> Result<String, KeycloakError> {
        // Keycloak's default user profile requires both names before it lets a user log in
        // ("account is not fully set up"); one name is split at its first space.
        let (first, last) = name
            .split_once(' ')
            .map_or((name, name), |(first, last)| (first, last.trim()));
        let user = json!({
            "username": email,
            "email": email,
            "emailVerified": true,
            "enabled": true,
            "firstName": first,
            "lastName": last,
            "credentials": [{ "type": "password", "value": password, "temporary": false }],
        });
        let response = self
            .http
            .post(self.admin("/users"))
            .bearer_auth(self.token().await?)
            .json(&user)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::CONFLICT {
            return Err(KeycloakError::Duplicate);
        }
        if response.status() == reqwest::StatusCode::BAD_REQUEST {
            // The user profile's validators (e.g. a person name with `<`): the client's input.
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let reason = body["errorMessage"]
                .as_str()
                .or_else(|| body["error"].as_str())
                .unwrap_or("a field was refused");
            return Err(KeycloakError::Rejected(format!(
                "the sign-in service refused the name or email ({reason})"
            )));
        }
        let response = checked(response).await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        location
            .rsplit('/')
            .next()
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .ok_or(KeycloakError::Refused {
                status: 201,
                body: "no Location for the new user".into(),
            })
    }

    pub async fn assign_realm_role(&self, user_id: &str, role: &str) -> Result<(), KeycloakError> {
        let token = self.token().await?;
        let representation: Value = checked(
            self.http
                .get(self.admin(&format!("/roles/{role}")))
                .bearer_auth(&token)
                .send()
                .await?,
        )
        .await?
        .json()
        .await?;
        checked(
            self.http
                .post(self.admin(&format!("/users/{user_id}/role-mappings/realm")))
                .bearer_auth(&token)
                .json(&json!([representation]))
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }

    /// Registers a person: a Keycloak user with `role`, then `then` with the user's id (opening
    /// the person's ledger accounts, recording them). When `then` or the role assignment fails,
    /// the user is removed again, so that a retry of the registration can succeed.
    pub async fn register<T, E, F, Fut>(
        &self,
        person: &Person<'_>,
        role: &str,
        then: F,
    ) -> Result<T, E>
    where
        E: From<KeycloakError>,
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let user_id = self
            .create_user(person.email, person.password, person.name)
            .await?;
        let outcome = match self.assign_realm_role(&user_id, role).await {
            Ok(()) => then(user_id.clone()).await,
            Err(error) => Err(E::from(error)),
        };
        if outcome.is_err() {
            if let Err(cleanup) = self.delete_user(&user_id).await {
                tracing::error!(%cleanup, user = %user_id, "could not remove the user of a failed registration");
            }
        }
        outcome
    }

    /// Removes a user (compensation when a registration fails after the user was made).
    pub async fn delete_user(&self, user_id: &str) -> Result<(), KeycloakError> {
        checked(
            self.http
                .delete(self.admin(&format!("/users/{user_id}")))
                .bearer_auth(self.token().await?)
                .send()
                .await?,
        )
        .await?;
        Ok(())
    }
}

/// Passwords shorter than this are refused (Keycloak's own policy may ask for more).
pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 128;
pub const EMAIL_MAX_CHARS: usize = 254;

/// Who is registering: the login (an email) and the password they chose.
pub struct Person<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub name: &'a str,
}

impl Person<'_> {
    /// The email and password rules every registration shares; the reason when they fail, as a
    /// sentence for the client.
    pub fn validate(&self) -> Result<(), String> {
        let email = self.email;
        let well_formed = email.len() <= EMAIL_MAX_CHARS
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
            })
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !well_formed {
            return Err(format!(
                "email must be an address like name@example.com (at most {EMAIL_MAX_CHARS} characters)"
            ));
        }
        let password_chars = self.password.chars().count();
        if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&password_chars) {
            return Err(format!(
                "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
            ));
        }
        Ok(())
    }
}

async fn checked(response: reqwest::Response) -> Result<reqwest::Response, KeycloakError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    Err(KeycloakError::Refused { status, body })
}
