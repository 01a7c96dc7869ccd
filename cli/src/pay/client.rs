//! HTTPS through the installation's gateway, as a phone or a till would call it: a client that
//! trusts only the installation's CA and resolves the `*.local.test` names to loopback itself
//! (so `/etc/hosts` need not have them), Keycloak logins and token renewal, and answers turned
//! into values or one-line errors.

use super::profiles::{Login, Profile, Store, Tokens};
use crate::runtime::home::Home;
use crate::runtime::tls::TlsFiles;
use crate::support::exit::{fail, Code};
use anyhow::Context;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Bound for one request and its answer. A payment saga answers within about 2 s even when it
/// waits (10 × 200 ms, then 503 `payment-pending`); Keycloak's first login after a start is the
/// slowest thing seen, at a few seconds.
const REQUEST_TIMEOUT_MS: u64 = 30_000;
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Attempts for one call when the answer is transient (no connection, a 502/503/504, the same
/// Idempotency-Key still in flight). Retrying is safe: money-moving calls repeat their key.
const ATTEMPTS_MAX: u32 = 4;
/// Waits between those attempts: doubling from the first, with jitter (`paykit::backoff`), so
/// that the many clients of `paytool load` that met the same 503 do not come back together.
/// Three waits at most: about 1.9 s in all on average, 2.5 s at worst.
const RETRY_BACKOFF_FIRST_MS: u64 = 250;
const RETRY_BACKOFF_MAX_MS: u64 = 1_000;
/// The longest a `Retry-After` (a 429 from the gateway's rate limits) is waited out; a longer
/// one is reported instead.
const RETRY_AFTER_MAX_MS: u64 = 10_000;
/// A token this close to its expiry is renewed first, so that it does not expire in flight.
const TOKEN_MARGIN_S: i64 = 30;
/// How much of a non-JSON error body a message repeats.
const BODY_SNIPPET_MAX_CHARS: usize = 200;
/// Connections come from this local address when set (any 127.x address is loopback): tests
/// use it so that the gateway's per-address registration limit counts them on their own.
pub const SOURCE_ADDRESS_ENV: &str = "PAYTOOL_PAY_SOURCE_ADDRESS";

/// The realm's public client for people at a terminal (device grant; password grant for tests).
const CLI_CLIENT_ID: &str = "paytool-cli";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// One answer of the token endpoint to a device code (RFC 8628 §3.5).
#[derive(Debug)]
pub enum DevicePoll {
    Tokens(Tokens),
    /// Not approved yet: ask again after the interval.
    Pending,
    /// Asked too often: add 5 s to the interval, for this and every later poll.
    SlowDown,
    Denied(String),
    Expired(String),
}

#[derive(Debug, Clone, Copy)]
pub enum Host {
    Api,
    Merchant,
    Sso,
}

impl Host {
    fn name(self) -> &'static str {
        match self {
            Host::Api => "api.local.test",
            Host::Merchant => "merchant.local.test",
            Host::Sso => "sso.local.test",
        }
    }
}

/// The platform refused a request: a problem document (or Keycloak's error), with the exit
/// code it maps to. Printed as `error: <title>: <detail>`.
#[derive(Debug)]
pub struct Refusal {
    pub code: Code,
    pub status: u16,
    pub title: String,
    pub detail: Option<String>,
}

impl Refusal {
    /// `<title>: <detail>`, or `<title> (<status>)` without a detail.
    pub fn summary(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.title),
            None => format!("{} ({})", self.title, self.status),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error: {}", self.summary())
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    fn from_problem(status: StatusCode, problem: &Value) -> Self {
        Self {
            code: code_for(status),
            status: status.as_u16(),
            title: problem["title"]
                .as_str()
                .map_or_else(|| status.to_string(), one_line),
            detail: problem["detail"].as_str().map(one_line),
        }
    }
}

/// 402 is a decline; 401/403 a login problem; other 4xx a refusal; 5xx a failure.
pub(super) fn code_for(status: StatusCode) -> Code {
    match status.as_u16() {
        402 => Code::Declined,
        401 | 403 => Code::Unauthorized,
        400..=499 => Code::Refused,
        _ => Code::Failed,
    }
}

/// Keycloak answers OAuth errors (`{"error", "error_description"}`), not problems: a 4xx is a
/// refused login (exit 11), anything else a failure.
fn oauth_refusal(status: StatusCode, body: &Value) -> anyhow::Error {
    anyhow::Error::new(Refusal {
        code: if status.is_client_error() {
            Code::Unauthorized
        } else {
            Code::Failed
        },
        status: status.as_u16(),
        title: "Login refused".to_string(),
        detail: Some(one_line(
            body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("Keycloak gave no reason"),
        )),
    })
}

/// The claims of a JWT, read without checking its signature: only to tell the user who they
/// are and which roles they hold. The services check every token they are sent.
pub fn unverified_claims(token: &str) -> anyhow::Result<Value> {
    use base64::Engine;
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| fail(Code::Failed, "Keycloak's access token is not a JWT"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| fail(Code::Failed, format!("the access token's claims: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| fail(Code::Failed, format!("the access token's claims: {e}")))
}

/// Answers are printed on one line whatever the server put in them.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    port: u16,
    realm: String,
}

impl Gateway {
    /// The gateway of a running installation, reached on loopback whatever `/etc/hosts` says.
    pub fn connect(home: &Home) -> anyhow::Result<Self> {
        let source = match std::env::var(SOURCE_ADDRESS_ENV) {
            Ok(source) => Some(source.parse().map_err(|_| {
                fail(
                    Code::Usage,
                    format!("{SOURCE_ADDRESS_ENV}={source} is not an IP address"),
                )
            })?),
            Err(_) => None,
        };
        Self::connect_from(home, source)
    }

    /// The gateway reached from a given local address (any 127.x is loopback): `paytool load`
    /// spreads its users over several, as many people's devices would be.
    pub fn connect_from(home: &Home, source: Option<IpAddr>) -> anyhow::Result<Self> {
        if crate::runtime::state::running_supervisor(home).is_none() {
            return Err(fail(
                Code::NotRunning,
                format!(
                    "the platform at {} is not running: start it with `paytool up`",
                    home.dir.display()
                ),
            ));
        }
        let port = home.ports().gateway_https;
        let ca_path = TlsFiles::of(home).ca_cert;
        let ca = std::fs::read(&ca_path).with_context(|| {
            format!(
                "cannot read the installation's CA {}: run `paytool tls init`",
                ca_path.display()
            )
        })?;
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&ca)
                    .with_context(|| format!("{} is not a PEM certificate", ca_path.display()))?,
            )
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .user_agent(concat!("paytool/", env!("CARGO_PKG_VERSION")));
        if let Some(address) = source {
            builder = builder.local_address(address);
        }
        for host in [Host::Api, Host::Merchant, Host::Sso] {
            builder = builder.resolve(host.name(), SocketAddr::from(([127, 0, 0, 1], port)));
        }
        Ok(Self {
            http: builder.build()?,
            port,
            realm: crate::runtime::components::keycloak::REALM.to_string(),
        })
    }

    /// The HTTP client itself, for callers that measure single attempts (`paytool load`).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn url(&self, host: Host, path: &str) -> String {
        format!("https://{}:{}{path}", host.name(), self.port)
    }

    /// A request for a long-lived answer (the live stream): no overall timeout.
    pub fn streaming(&self, host: Host, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(host, path))
    }

    fn token_url(&self) -> String {
        self.oidc_url("token")
    }

    /// Logs in with the password grant of the public `paytool-cli` client.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Tokens> {
        self.token(&[
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", email),
            ("password", password),
        ])
        .await
    }

    fn oidc_url(&self, endpoint: &str) -> String {
        self.url(
            Host::Sso,
            &format!("/realms/{}/protocol/openid-connect/{endpoint}", self.realm),
        )
    }

    /// RFC 8628 §3.1: a device code for `paytool-cli`, and the code a person enters.
    pub async fn device_authorization(&self) -> anyhow::Result<Value> {
        let url = self.oidc_url("auth/device");
        let reply = self
            .exchange(false, || {
                self.http.post(&url).form(&[("client_id", CLI_CLIENT_ID)])
            })
            .await?;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if !reply.status.is_success() || !body["device_code"].is_string() {
            return Err(oauth_refusal(reply.status, &body));
        }
        Ok(body)
    }

    /// RFC 8628 §3.4: one poll of the token endpoint for a device code.
    pub async fn poll_device(&self, device_code: &str) -> anyhow::Result<DevicePoll> {
        let asked_at = Utc::now();
        let url = self.token_url();
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", CLI_CLIENT_ID),
            ("device_code", device_code),
        ];
        let reply = self
            .exchange(false, || self.http.post(&url).form(&form))
            .await?;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status.is_success() {
            return Ok(DevicePoll::Tokens(tokens_from(&body, asked_at)?));
        }
        let reason = || {
            one_line(
                body["error_description"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("Keycloak gave no reason"),
            )
        };
        Ok(match body["error"].as_str() {
            Some("authorization_pending") => DevicePoll::Pending,
            Some("slow_down") => DevicePoll::SlowDown,
            Some("access_denied") => DevicePoll::Denied(reason()),
            Some("expired_token") => DevicePoll::Expired(reason()),
            _ => return Err(oauth_refusal(reply.status, &body)),
        })
    }

    /// RFC 7009: revokes a refresh token, which ends its Keycloak session.
    pub async fn revoke(&self, refresh_token: &str) -> anyhow::Result<()> {
        let url = self.oidc_url("revoke");
        let form = [
            ("client_id", CLI_CLIENT_ID),
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ];
        let reply = self
            .exchange(true, || self.http.post(&url).form(&form))
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Err(oauth_refusal(reply.status, &body))
    }

    pub async fn refresh(&self, refresh_token: &str) -> anyhow::Result<Tokens> {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLI_CLIENT_ID),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    async fn token(&self, form: &[(&str, &str)]) -> anyhow::Result<Tokens> {
        let asked_at = Utc::now();
        let url = self.token_url();
        let reply = self
            .exchange(false, || self.http.post(&url).form(form))
            .await?;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if !reply.status.is_success() {
            return Err(oauth_refusal(reply.status, &body));
        }
        tokens_from(&body, asked_at)
    }

    /// Sends what `make` builds and reads the answer, again on a transient failure, at most
    /// [`ATTEMPTS_MAX`] times. `resend_on_timeout` says whether a request that may have reached
    /// the server can be sent again: true for reads and for calls with an Idempotency-Key.
    async fn exchange(
        &self,
        resend_on_timeout: bool,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<Reply> {
        let mut backoff =
            paykit::backoff::Backoff::new(RETRY_BACKOFF_FIRST_MS, RETRY_BACKOFF_MAX_MS);
        let mut attempt = 1;
        loop {
            let last = attempt >= ATTEMPTS_MAX;
            match Reply::of(make().timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))).await {
                // Refused by a rate limit at the gateway: the request reached no service, so it
                // can be sent again once the limit allows, keyed or not.
                Ok(reply) if !last && reply.retry_after.is_some() => {
                    tokio::time::sleep(reply.retry_after.unwrap_or_default()).await;
                    attempt += 1;
                    continue;
                }
                Ok(reply) if !last && reply.transient() => {}
                Ok(reply) => return Ok(reply),
                Err(error) if !last && (error.is_connect() || resend_on_timeout) => {}
                Err(error) => return Err(transport_error(&error)),
            }
            tokio::time::sleep(backoff.next_delay()).await;
            attempt += 1;
        }
    }

    /// One call: JSON in, JSON out; a problem answer becomes a [`Refusal`].
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let safe_to_resend = method == Method::GET || idempotency_key.is_some();
        let reply = self
            .exchange(safe_to_resend, || {
                let mut request = self.http.request(method.clone(), url);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                if let Some(key) = idempotency_key {
                    request = request.header("Idempotency-Key", key);
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                request
            })
            .await?;
        reply.into_value()
    }
}

/// A whole answer: status, whether it is a problem document, and the body.
struct Reply {
    status: StatusCode,
    problem: bool,
    /// For a 429 whose `Retry-After` (seconds) is within [`RETRY_AFTER_MAX_MS`].
    retry_after: Option<Duration>,
    path: String,
    body: Vec<u8>,
}

impl Reply {
    async fn of(request: reqwest::RequestBuilder) -> Result<Self, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status();
        let problem = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json"));
        let path = response.url().path().to_string();
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| response.headers().get("retry-after"))
            .flatten()
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .filter(|wait| *wait <= Duration::from_millis(RETRY_AFTER_MAX_MS));
        let body = response.bytes().await?.to_vec();
        Ok(Self {
            status,
            problem,
            retry_after,
            path,
            body,
        })
    }

    /// A 502/503/504 (the gateway without its upstream, `payment-pending`) or the same
    /// Idempotency-Key still being handled: the same request is expected to work shortly.
    fn transient(&self) -> bool {
        matches!(self.status.as_u16(), 502..=504)
            || (self.status == StatusCode::CONFLICT
                && self.problem
                && serde_json::from_slice::<Value>(&self.body).is_ok_and(|p| {
                    p["type"]
                        .as_str()
                        .is_some_and(|t| t.ends_with("/idempotency-key-in-flight"))
                }))
    }

    fn into_value(self) -> anyhow::Result<Value> {
        let Self {
            status,
            problem,
            path,
            body,
            ..
        } = self;
        if status.is_success() {
            if body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body).map_err(|e| {
                fail(
                    Code::Failed,
                    format!("{path} answered {status} with no JSON: {e}"),
                )
            });
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(document) if problem || document["title"].is_string() => {
                Err(anyhow::Error::new(Refusal::from_problem(status, &document)))
            }
            _ => {
                let text: String = String::from_utf8_lossy(&body)
                    .chars()
                    .take(BODY_SNIPPET_MAX_CHARS)
                    .collect();
                Err(fail(
                    code_for(status),
                    format!("{path} answered {status}: {}", one_line(&text)),
                ))
            }
        }
    }
}

fn transport_error(error: &reqwest::Error) -> anyhow::Error {
    let url = error
        .url()
        .map(|u| format!("{}://{}", u.scheme(), u.authority()))
        .unwrap_or_else(|| "the gateway".to_string());
    if error.is_timeout() {
        fail(
            Code::Failed,
            format!(
                "{url} did not answer within {} s: see `paytool status` and `paytool logs gateway`",
                REQUEST_TIMEOUT_MS / 1000
            ),
        )
    } else if error.is_connect() {
        fail(
            Code::NotRunning,
            format!("cannot connect to {url}: is the platform up? see `paytool status`"),
        )
    } else {
        fail(
            Code::Failed,
            format!(
                "the request to {url} failed: {}",
                one_line(&error_chain(error))
            ),
        )
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tokens_from(body: &Value, asked_at: DateTime<Utc>) -> anyhow::Result<Tokens> {
    let access_token = body["access_token"]
        .as_str()
        .ok_or_else(|| fail(Code::Failed, "Keycloak answered without an access token"))?
        .to_string();
    let seconds = |field: &str| body[field].as_i64().filter(|s| *s > 0);
    Ok(Tokens {
        access_token,
        access_expires_at: asked_at + chrono::Duration::seconds(seconds("expires_in").unwrap_or(0)),
        refresh_token: body["refresh_token"].as_str().map(str::to_string),
        refresh_expires_at: seconds("refresh_expires_in")
            .map(|s| asked_at + chrono::Duration::seconds(s)),
    })
}

/// A profile's identity on the platform: calls with its token, renewed as needed and saved
/// back to the store (when there is one; the demo's identities live in memory only).
#[derive(Debug, Clone)]
pub struct Session {
    pub gateway: Gateway,
    pub name: String,
    pub profile: Profile,
    store: Option<Store>,
}

impl Session {
    pub fn new(gateway: Gateway, name: &str, profile: Profile, store: Option<Store>) -> Self {
        Self {
            gateway,
            name: name.to_string(),
            profile,
            store,
        }
    }

    /// A token good for at least [`TOKEN_MARGIN_S`]: the saved one, else renewed with the
    /// refresh token, else a new login with the saved password.
    pub async fn token(&mut self) -> anyhow::Result<String> {
        let soon = Utc::now() + chrono::Duration::seconds(TOKEN_MARGIN_S);
        let tokens = &self.profile.tokens;
        if tokens.access_expires_at > soon {
            return Ok(tokens.access_token.clone());
        }
        let refreshable = tokens
            .refresh_token
            .clone()
            .filter(|_| tokens.refresh_expires_at.is_none_or(|at| at > soon));
        let renewed = match refreshable {
            // A refused refresh (a session ended by Keycloak's restart, say) falls back to
            // the password, which is why the profile keeps it.
            Some(refresh) => match self.gateway.refresh(&refresh).await {
                Ok(tokens) => tokens,
                Err(error) if error.downcast_ref::<Refusal>().is_some() => self.login().await?,
                Err(error) => return Err(error),
            },
            None => self.login().await?,
        };
        self.keep(renewed)
    }

    async fn login(&self) -> anyhow::Result<Tokens> {
        if self.profile.login == Login::Device {
            // A device login has no password to fall back on: only a person can approve a
            // new one.
            return Err(anyhow::Error::new(Refusal {
                code: Code::Unauthorized,
                status: 401,
                title: "Login expired".to_string(),
                detail: Some(format!(
                    "the sign-in of {} (profile '{}') has ended: run `paytool login` again",
                    self.profile.email, self.name
                )),
            }));
        }
        self.gateway
            .login(&self.profile.email, &self.profile.password)
            .await
            .map_err(|error| match error.downcast::<Refusal>() {
                Ok(mut refusal) => {
                    refusal.detail = Some(format!(
                        "{} for {} (profile '{}'); was the installation purged since it was registered?",
                        refusal.detail.unwrap_or_default(),
                        self.profile.email,
                        self.name
                    ));
                    anyhow::Error::new(refusal)
                }
                Err(error) => error,
            })
    }

    fn keep(&mut self, tokens: Tokens) -> anyhow::Result<String> {
        if let Some(store) = &self.store {
            store.save_tokens(&self.name, &self.profile.email, &tokens)?;
        }
        let access = tokens.access_token.clone();
        self.profile.tokens = tokens;
        Ok(access)
    }

    /// Forgets the access token, so that the next call logs in afresh.
    pub fn expire(&mut self) {
        self.profile.tokens.access_expires_at = DateTime::<Utc>::MIN_UTC;
    }

    pub async fn get(&mut self, host: Host, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, host, path, None, None).await
    }

    /// A POST that moves money (or makes a payment request), under `key`.
    pub async fn post_keyed(
        &mut self,
        host: Host,
        path: &str,
        body: &Value,
        key: &str,
    ) -> anyhow::Result<Value> {
        self.call(Method::POST, host, path, Some(body), Some(key))
            .await
    }

    pub async fn post(&mut self, host: Host, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, host, path, Some(body), None).await
    }

    async fn call(
        &mut self,
        method: Method,
        host: Host,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let url = self.gateway.url(host, path);
        let token = self.token().await?;
        let first = self
            .gateway
            .call(method.clone(), &url, Some(&token), body, key)
            .await;
        match first {
            // A token refused before its time (the realm's keys changed, a session was ended):
            // log in again once. Repeating is safe: reads, and keyed calls with the same key.
            Err(error)
                if error
                    .downcast_ref::<Refusal>()
                    .is_some_and(|r| r.status == 401) =>
            {
                self.expire();
                // A registered profile logs in afresh with its password; a device login can
                // only try its refresh token.
                if self.profile.login == Login::Password {
                    self.profile.tokens.refresh_token = None;
                }
                let token = self.token().await?;
                self.gateway
                    .call(method, &url, Some(&token), body, key)
                    .await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_map_to_exit_codes_by_status() {
        assert_eq!(code_for(StatusCode::PAYMENT_REQUIRED), Code::Declined);
        assert_eq!(code_for(StatusCode::UNAUTHORIZED), Code::Unauthorized);
        assert_eq!(code_for(StatusCode::FORBIDDEN), Code::Unauthorized);
        assert_eq!(code_for(StatusCode::NOT_FOUND), Code::Refused);
        assert_eq!(code_for(StatusCode::GONE), Code::Refused);
        assert_eq!(code_for(StatusCode::TOO_MANY_REQUESTS), Code::Refused);
        assert_eq!(code_for(StatusCode::SERVICE_UNAVAILABLE), Code::Failed);
    }

    #[test]
    fn a_problem_prints_as_one_line_with_its_title_and_detail() {
        let refusal = Refusal::from_problem(
            StatusCode::PAYMENT_REQUIRED,
            &serde_json::json!({
                "type": "https://paytool.local.test/problems/insufficient-funds",
                "title": "Insufficient funds",
                "status": 402,
                "detail": "The wallet holds 100 JPY;\nthe payment needs 500 JPY."
            }),
        );
        assert_eq!(refusal.code, Code::Declined);
        assert_eq!(
            refusal.to_string(),
            "error: Insufficient funds: The wallet holds 100 JPY; the payment needs 500 JPY."
        );
    }

    #[test]
    fn claims_are_read_from_the_middle_of_a_jwt() {
        use base64::Engine;
        let encode = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let claims = serde_json::json!({"preferred_username": "ann@example.test",
            "realm_access": {"roles": ["consumer", "offline_access"]}});
        let token = format!(
            "{}.{}.signature",
            encode(&serde_json::json!({"alg": "RS256"})),
            encode(&claims)
        );
        assert_eq!(unverified_claims(&token).expect("claims"), claims);
        assert!(unverified_claims("not-a-jwt").is_err());
    }

    #[test]
    fn token_lifetimes_count_from_when_they_were_asked_for() {
        let at = Utc::now();
        let tokens = tokens_from(
            &serde_json::json!({"access_token": "a", "expires_in": 300,
                                "refresh_token": "r", "refresh_expires_in": 0}),
            at,
        )
        .expect("tokens");
        assert_eq!(
            tokens.access_expires_at,
            at + chrono::Duration::seconds(300)
        );
        assert_eq!(tokens.refresh_token.as_deref(), Some("r"));
        assert_eq!(tokens.refresh_expires_at, None);
    }
}
