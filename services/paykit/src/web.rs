//! Browser sign-in for a service's own web pages: a backend-for-frontend.
//!
//! The browser never holds a token. `GET /login` starts OpenID Connect's authorization-code flow
//! with PKCE (S256) at Keycloak for a confidential client; `GET /callback` exchanges the code over
//! loopback with the client's secret and keeps the tokens in a server-side session row. The
//! browser only gets `__Host-paytool-session`, 32 random bytes of which only the SHA-256 is
//! stored, so a leaked database does not hand out live sessions.
//!
//! Requests authenticated by that cookie are *ambient*: a page on another site can make the
//! browser send them. SameSite=Lax stops cross-site POSTs in current browsers; as defence in
//! depth every unsafe method must also carry `X-CSRF-Token` equal to the session's token, which
//! only a page of our own origin can read (from `GET /session` or the page it is given).
//!
//! [`authenticate`] is the middleware that turns a session cookie into the same
//! [`Principal`] a bearer token gives, so a service's handlers do not care which one came.

use crate::auth::{AuthError, Principal, Verifier};
use crate::problem::Problem;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// The session cookie. `__Host-` makes browsers refuse it unless it is Secure, has Path=/ and
/// no Domain: no sibling host (sso.local.test, api.local.test) can set or shadow it.
pub const SESSION_COOKIE: &str = "__Host-paytool-session";
/// Binds a login in progress to the browser that started it, so that an attacker cannot make a
/// victim's browser finish the attacker's login (login CSRF): it carries the `state`.
pub const LOGIN_COOKIE: &str = "__Host-paytool-login";
/// The header a cookie-authenticated unsafe request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A login (state and PKCE verifier) must be finished within this.
pub const LOGIN_TTL_S: i64 = 600;
/// A session lasts this long unless the settings say otherwise (a working day).
pub const SESSION_TTL_DEFAULT_S: u64 = 8 * 60 * 60;
/// Random values (cookie, state, PKCE verifier, CSRF token) are this many bytes of the OS's
/// CSPRNG, base64url: 43 characters, within RFC 7636's 43 to 128 for the verifier.
pub const RANDOM_BYTES: usize = 32;
/// Calls to Keycloak's token endpoint give up after this.
const TOKEN_ENDPOINT_TIMEOUT_MS: u64 = 5_000;
/// A request waiting for another request's refresh of the same session waits at most this
/// (the other one holds the row's lock for at most the token call).
const REFRESH_LOCK_TIMEOUT_MS: u64 = TOKEN_ENDPOINT_TIMEOUT_MS + 1_000;
/// An access token is refreshed this long before it expires, so that it does not expire
/// between our check and the handler's use of it.
const ACCESS_RENEW_BEFORE_S: i64 = 10;
/// Used when the token response names no lifetime (Keycloak always does).
const ACCESS_LIFETIME_DEFAULT_S: i64 = 60;
/// Keycloak's error bodies are logged, cut to this.
const ERROR_BODY_MAX_CHARS: usize = 300;
/// Expired logins and sessions are deleted this often.
pub const PURGE_INTERVAL_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Deserialize)]
pub struct WebSettings {
    /// Where browsers reach this service, e.g. `https://merchant.local.test:26001`; the redirect
    /// URI is this plus `/callback`.
    pub public_base_url: String,
    /// The confidential client the pages sign in with (`merchant-dashboard`).
    pub client_id: String,
    pub client_secret: SecretString,
    /// Keycloak as browsers reach it (the issuer's base): the authorize and end-session pages.
    pub keycloak_public_url: String,
    /// Keycloak on loopback: the token endpoint, called by this server only.
    pub keycloak_internal_url: String,
    pub realm: String,
    #[serde(default = "default_session_ttl_s")]
    pub session_ttl_s: u64,
}

fn default_session_ttl_s() -> u64 {
    SESSION_TTL_DEFAULT_S
}

impl WebSettings {
    fn endpoint(&self, base: &str, name: &str) -> String {
        format!(
            "{}/realms/{}/protocol/openid-connect/{name}",
            base.trim_end_matches('/'),
            self.realm
        )
    }

    fn redirect_uri(&self) -> String {
        format!("{}/callback", self.public_base_url.trim_end_matches('/'))
    }

    fn home(&self) -> String {
        format!("{}/", self.public_base_url.trim_end_matches('/'))
    }

    /// Keycloak's authorization endpoint with this login's parameters.
    pub fn authorize_url(&self, state: &str, challenge: &str) -> Result<String, WebError> {
        let mut url = reqwest::Url::parse(&self.endpoint(&self.keycloak_public_url, "auth"))
            .map_err(|e| WebError::Misconfigured(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", "openid")
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Keycloak's end-session endpoint, which ends the single sign-on session too and sends the
    /// browser back to our home page.
    pub fn end_session_url(&self, id_token: Option<&str>) -> Result<String, WebError> {
        let mut url = reqwest::Url::parse(&self.endpoint(&self.keycloak_public_url, "logout"))
            .map_err(|e| WebError::Misconfigured(e.to_string()))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("client_id", &self.client_id)
                .append_pair("post_logout_redirect_uri", &self.home());
            if let Some(id_token) = id_token {
                query.append_pair("id_token_hint", id_token);
            }
        }
        Ok(url.into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("Keycloak cannot be reached: {0}")]
    Unreachable(String),
    #[error("Keycloak refused: {0}")]
    Refused(String),
    #[error("the web settings are invalid: {0}")]
    Misconfigured(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl WebError {
    pub fn problem(&self) -> Problem {
        match self {
            WebError::Unreachable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth-unavailable",
                "Sign-in temporarily unavailable",
            )
            .with_detail("The sign-in service cannot be reached right now; retry shortly."),
            WebError::Refused(_) => {
                Problem::new(StatusCode::BAD_REQUEST, "login-failed", "Sign-in failed")
                    .with_detail("The sign-in could not be completed; start again from /login.")
            }
            WebError::Auth(error) => error.problem(),
            WebError::Database(_) | WebError::Misconfigured(_) => {
                tracing::error!(error = %self, "web sign-in failed");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.problem().into_response()
    }
}

/// A signed-in browser: who it is and the token its unsafe requests must repeat.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// The server-side sessions of a service's pages; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    settings: WebSettings,
    pool: PgPool,
    verifier: Verifier,
    http: reqwest::Client,
}

/// What Keycloak's token endpoint answers.
#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

type SessionRow = (
    String,
    String,
    bool,
    String,
    Option<String>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
);

impl Sessions {
    /// `verifier` is the service's own: a session's access token must be one the service's API
    /// would accept as a bearer token (its audience included).
    pub fn new(settings: WebSettings, pool: PgPool, verifier: Verifier) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                pool,
                verifier,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_millis(TOKEN_ENDPOINT_TIMEOUT_MS))
                    // The token endpoint never redirects; following one would leak the secret.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()?,
            }),
        })
    }

    pub fn settings(&self) -> &WebSettings {
        &self.inner.settings
    }

    /// Deletes expired logins and sessions now and then every `interval_ms`, until aborted.
    pub fn spawn_purge(&self, interval_ms: u64) -> tokio::task::JoinHandle<()> {
        let pool = self.inner.pool.clone();
        tokio::spawn(async move {
            loop {
                for statement in [
                    "DELETE FROM web_logins WHERE expires_at < now()",
                    "DELETE FROM web_sessions WHERE expires_at < now()",
                ] {
                    if let Err(error) = sqlx::query(statement).execute(&pool).await {
                        tracing::warn!(%error, "web session purge failed");
                    }
                }
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            }
        })
    }

    /// The session behind a cookie's value, its access token refreshed if it has expired.
    /// `None` when there is none (unknown, expired, or its refresh was refused: it ended).
    pub async fn session(&self, cookie: &str) -> Result<Option<Session>, WebError> {
        let id = hash(cookie);
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT subject, access_token, access_expires_at > now() + $2 * interval '1 second',
                    csrf_token, name, email, expires_at
             FROM web_sessions WHERE id_hash = $1 AND expires_at > now()",
        )
        .bind(&id)
        .bind(ACCESS_RENEW_BEFORE_S)
        .fetch_optional(&self.inner.pool)
        .await?;
        let Some((_, access_token, fresh, csrf_token, name, email, expires_at)) = row else {
            return Ok(None);
        };
        let access_token = if fresh {
            access_token
        } else {
            match self.refresh(&id).await? {
                Some(token) => token,
                None => return Ok(None),
            }
        };
        match self.inner.verifier.verify(&access_token).await {
            Ok(principal) => Ok(Some(Session {
                principal,
                csrf_token,
                name,
                email,
                expires_at,
            })),
            Err(AuthError::KeysUnavailable(reason)) => Err(WebError::Unreachable(reason)),
            Err(error) => {
                // A token we hold that the API would refuse: the session cannot be used.
                tracing::info!(%error, "a session's access token was refused; ending it");
                self.end(&id).await?;
                Ok(None)
            }
        }
    }

    /// Renews a session's access token with its refresh token. The row is locked while Keycloak
    /// is asked, so that of a page's parallel requests one refreshes and the others, once the
    /// lock is theirs, find the new token (Keycloak may rotate refresh tokens: using the same
    /// one twice would end the session).
    async fn refresh(&self, id: &str) -> Result<Option<String>, WebError> {
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{REFRESH_LOCK_TIMEOUT_MS}ms"))
            .execute(&mut *tx)
            .await?;
        let row: Option<(Option<String>, String, bool)> = sqlx::query_as(
            "SELECT refresh_token, access_token, access_expires_at > now() + $2 * interval '1 second'
             FROM web_sessions WHERE id_hash = $1 AND expires_at > now() FOR UPDATE",
        )
        .bind(id)
        .bind(ACCESS_RENEW_BEFORE_S)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((refresh_token, access_token, fresh)) = row else {
            return Ok(None);
        };
        if fresh {
            // Another request refreshed it while this one waited for the lock.
            return Ok(Some(access_token));
        }
        let Some(refresh_token) = refresh_token else {
            sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(None);
        };
        match self
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
            ])
            .await
        {
            Ok(tokens) => {
                sqlx::query(
                    "UPDATE web_sessions SET access_token = $2,
                            refresh_token = COALESCE($3, refresh_token),
                            id_token = COALESCE($4, id_token),
                            access_expires_at = now() + $5 * interval '1 second'
                     WHERE id_hash = $1",
                )
                .bind(id)
                .bind(&tokens.access_token)
                .bind(&tokens.refresh_token)
                .bind(&tokens.id_token)
                .bind(tokens.expires_in.unwrap_or(ACCESS_LIFETIME_DEFAULT_S))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(tokens.access_token))
            }
            Err(WebError::Refused(reason)) => {
                // The refresh token expired or was revoked (a sign-out elsewhere): the session
                // is over; the browser signs in again.
                tracing::info!(%reason, "a session's refresh was refused; ending it");
                sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    async fn end(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id)
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Tokens, WebError> {
        let settings = &self.inner.settings;
        let mut fields: Vec<(&str, &str)> = vec![
            ("client_id", settings.client_id.as_str()),
            ("client_secret", settings.client_secret.expose_secret()),
        ];
        fields.extend_from_slice(form);
        let response = self
            .inner
            .http
            .post(settings.endpoint(&settings.keycloak_internal_url, "token"))
            .form(&fields)
            .send()
            .await
            .map_err(|e| WebError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_client_error() {
            let body: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(ERROR_BODY_MAX_CHARS)
                .collect();
            return Err(WebError::Refused(format!("{status}: {body}")));
        }
        if !status.is_success() {
            return Err(WebError::Unreachable(format!(
                "token endpoint answered {status}"
            )));
        }
        response
            .json()
            .await
            .map_err(|e| WebError::Unreachable(e.to_string()))
    }
}

/// `GET /login`, `GET /callback`, `POST /logout` and `GET /session`, for a service to merge.
pub fn router(sessions: Sessions) -> Router {
    Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/logout", post(logout))
        .route("/session", get(session))
        .with_state(sessions)
}

/// Turns a session cookie into the request's [`Principal`] (and [`Session`]) for the handlers
/// after it, and refuses a cookie-authenticated unsafe request without the CSRF token. A request
/// with an `Authorization` header is left to the bearer-token path untouched: a bearer token is
/// not ambient, so it needs no CSRF token. Without a valid cookie the request goes on
/// unauthenticated and the handler's `Principal` answers 401.
pub async fn authenticate(
    State(sessions): State<Sessions>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.headers().contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    let Some(cookie) = cookie_value(request.headers(), SESSION_COOKIE) else {
        return next.run(request).await;
    };
    let session = match sessions.session(&cookie).await {
        Ok(Some(session)) => session,
        Ok(None) => return next.run(request).await,
        Err(error) => return error.into_response(),
    };
    if !is_safe(request.method()) {
        let sent = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !csrf_matches(sent, &session.csrf_token) {
            return csrf_problem().into_response();
        }
    }
    request.extensions_mut().insert(session.principal.clone());
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn csrf_problem() -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "csrf", "CSRF token missing or wrong").with_detail(
        "A request authenticated by the session cookie that changes something must carry the \
         session's token in the X-CSRF-Token header (GET /session gives it).",
    )
}

fn unauthenticated() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Authentication required",
    )
    .with_detail("Not signed in: sign in at /login.")
}

async fn login(State(sessions): State<Sessions>) -> Result<Response, WebError> {
    let state = random_token();
    let verifier = random_token();
    sqlx::query(
        "INSERT INTO web_logins (state, verifier, expires_at)
         VALUES ($1, $2, now() + $3 * interval '1 second')",
    )
    .bind(&state)
    .bind(&verifier)
    .bind(LOGIN_TTL_S)
    .execute(&sessions.inner.pool)
    .await?;
    let location = sessions
        .settings()
        .authorize_url(&state, &pkce_challenge(&verifier))?;
    let cookie = set_cookie(LOGIN_COOKIE, &state, LOGIN_TTL_S);
    Ok(redirect(&location, &[cookie]))
}

#[derive(Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

fn login_problem(slug: &str, detail: &str) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, slug, "Sign-in failed")
        .with_detail(detail)
        .into_response()
}

async fn callback(
    State(sessions): State<Sessions>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, WebError> {
    if let Some(error) = callback.error {
        // Keycloak's error code only: its description could carry anything.
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Ok(login_problem(
            "login-failed",
            &format!("Keycloak ended the sign-in ({code}); start again from /login."),
        ));
    }
    let (Some(state), Some(code)) = (callback.state, callback.code) else {
        return Ok(login_problem(
            "login-failed",
            "The callback needs state and code; start again from /login.",
        ));
    };
    let started_here = cookie_value(&headers, LOGIN_COOKIE)
        .is_some_and(|cookie| constant_time_eq(cookie.as_bytes(), state.as_bytes()));
    if !started_here {
        return Ok(login_problem(
            "login-state",
            "This sign-in was not started by this browser; start again from /login.",
        ));
    }
    let verifier: Option<String> = sqlx::query_scalar(
        "DELETE FROM web_logins WHERE state = $1 AND expires_at > now() RETURNING verifier",
    )
    .bind(&state)
    .fetch_optional(&sessions.inner.pool)
    .await?;
    let Some(verifier) = verifier else {
        return Ok(login_problem(
            "login-expired",
            "This sign-in expired or was finished already; start again from /login.",
        ));
    };
    let redirect_uri = sessions.settings().redirect_uri();
    let tokens = sessions
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .await?;
    let principal = sessions.inner.verifier.verify(&tokens.access_token).await?;
    // The ID token came straight from the token endpoint over our own connection (OIDC Core
    // 3.1.3.7 lets a client trust it without checking its signature then); it only names the
    // person for the pages and is the hint at sign-out.
    let (name, email) = tokens
        .id_token
        .as_deref()
        .map(id_token_names)
        .unwrap_or_default();
    let cookie_secret = random_token();
    let ttl_s = i64::try_from(sessions.settings().session_ttl_s).unwrap_or(i64::MAX / 2);
    sqlx::query(
        "INSERT INTO web_sessions (id_hash, subject, name, email, access_token, refresh_token,
                                   id_token, access_expires_at, expires_at, csrf_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8 * interval '1 second',
                 now() + $9 * interval '1 second', $10)",
    )
    .bind(hash(&cookie_secret))
    .bind(&principal.subject)
    .bind(name)
    .bind(email)
    .bind(&tokens.access_token)
    .bind(&tokens.refresh_token)
    .bind(&tokens.id_token)
    .bind(tokens.expires_in.unwrap_or(ACCESS_LIFETIME_DEFAULT_S))
    .bind(ttl_s)
    .bind(random_token())
    .execute(&sessions.inner.pool)
    .await?;
    tracing::info!(subject = %principal.subject, "signed in");
    Ok(redirect(
        "/",
        &[
            set_cookie(SESSION_COOKIE, &cookie_secret, ttl_s),
            set_cookie(LOGIN_COOKIE, "", 0),
        ],
    ))
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

/// Ends the session here and at Keycloak. The CSRF token may come as the header (a script) or as
/// a form field (a plain HTML form, which cannot set headers): otherwise a page elsewhere could
/// sign people out.
async fn logout(
    State(sessions): State<Sessions>,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Result<Response, WebError> {
    let settings = sessions.settings();
    let Some(cookie) = cookie_value(&headers, SESSION_COOKIE) else {
        return Ok(redirect(
            &settings.home(),
            &[set_cookie(SESSION_COOKIE, "", 0)],
        ));
    };
    let id = hash(&cookie);
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT csrf_token, id_token FROM web_sessions WHERE id_hash = $1 AND expires_at > now()",
    )
    .bind(&id)
    .fetch_optional(&sessions.inner.pool)
    .await?;
    let Some((csrf_token, id_token)) = row else {
        return Ok(redirect(
            &settings.home(),
            &[set_cookie(SESSION_COOKIE, "", 0)],
        ));
    };
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form.ok().and_then(|Form(form)| form.csrf_token))
        .unwrap_or_default();
    if !csrf_matches(&sent, &csrf_token) {
        return Ok(csrf_problem().into_response());
    }
    sessions.end(&id).await?;
    let location = settings.end_session_url(id_token.as_deref())?;
    Ok(redirect(&location, &[set_cookie(SESSION_COOKIE, "", 0)]))
}

/// Who is signed in, for the pages' scripts: never a token but the CSRF token.
async fn session(State(sessions): State<Sessions>, headers: HeaderMap) -> Response {
    let Some(cookie) = cookie_value(&headers, SESSION_COOKIE) else {
        return unauthenticated().into_response();
    };
    match sessions.session(&cookie).await {
        Ok(Some(session)) => (
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "subject": session.principal.subject,
                "name": session.name,
                "email": session.email,
                "roles": session.principal.realm_roles,
                "csrf_token": session.csrf_token,
                "expires_at": session.expires_at,
            })),
        )
            .into_response(),
        Ok(None) => unauthenticated().into_response(),
        Err(error) => error.into_response(),
    }
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(value) => {
            headers.insert(header::LOCATION, value);
        }
        Err(error) => {
            tracing::error!(%error, "a redirect location is not a header value");
            return Problem::internal().into_response();
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A `Set-Cookie` value: HttpOnly (no script reads it), Secure, SameSite=Lax (sent on the
/// top-level navigation back from Keycloak, not on cross-site POSTs), Path=/ and no Domain (as
/// `__Host-` requires). `max_age_s` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_s: i64) -> String {
    format!("{name}={value}; Max-Age={max_age_s}; Path=/; Secure; HttpOnly; SameSite=Lax")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the CSRF token sent equals the session's, in time that does not depend on where they
/// differ (the length is not secret: every token has the same).
pub fn csrf_matches(sent: &str, expected: &str) -> bool {
    !expected.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

/// RFC 7636's S256 code challenge: base64url(SHA-256(verifier)), no padding.
pub fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// [`RANDOM_BYTES`] from the OS, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a cookie: its SHA-256, hex.
fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The person's name and email from an ID token's claims.
fn id_token_names(id_token: &str) -> (Option<String>, Option<String>) {
    let claims = id_token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .unwrap_or_default();
    let text = |field: &str| claims[field].as_str().map(str::to_string);
    (
        text("name").or_else(|| text("preferred_username")),
        text("email"),
    )
}

// The pages themselves (layout, cards, money as text, their headers) are in `page`.
mod page;
pub use page::{
    format_money, page_response, static_asset, Account, BodyData, Shell, ASSET_MAX_AGE_S,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebSettings {
        WebSettings {
            public_base_url: "https://merchant.local.test:26001".into(),
            client_id: "merchant-dashboard".into(),
            client_secret: "s3cret".to_string().into(),
            keycloak_public_url: "https://sso.local.test:26001".into(),
            keycloak_internal_url: "http://127.0.0.1:26005".into(),
            realm: "paytool".into(),
            session_ttl_s: SESSION_TTL_DEFAULT_S,
        }
    }

    #[test]
    fn the_pkce_challenge_of_rfc_7636s_example_verifier_is_the_rfcs_challenge() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn random_tokens_are_43_url_safe_characters_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }

    #[test]
    fn the_session_cookie_is_host_only_secure_http_only_and_lax() {
        let cookie = set_cookie(SESSION_COOKIE, "abc", 28_800);
        assert!(cookie.starts_with("__Host-paytool-session=abc;"));
        for attribute in [
            "; Secure",
            "; HttpOnly",
            "; SameSite=Lax",
            "; Path=/",
            "; Max-Age=28800",
        ] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(!cookie.to_lowercase().contains("domain="), "{cookie}");
    }

    #[test]
    fn a_cookie_is_found_among_others_and_an_empty_one_is_none() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-paytool-session=xyz; b=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-paytool-login="),
        );
        assert_eq!(
            cookie_value(&headers, SESSION_COOKIE).as_deref(),
            Some("xyz")
        );
        assert_eq!(cookie_value(&headers, LOGIN_COOKIE), None);
        assert_eq!(cookie_value(&headers, "missing"), None);
    }

    #[test]
    fn csrf_tokens_match_only_when_equal_and_never_when_empty() {
        let token = random_token();
        assert!(csrf_matches(&token, &token));
        assert!(!csrf_matches(&token[..42], &token));
        let mut other = token.clone().into_bytes();
        other[0] ^= 1;
        assert!(!csrf_matches(
            std::str::from_utf8(&other).expect("ascii"),
            &token
        ));
        assert!(!csrf_matches("", ""));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }

    #[test]
    fn the_authorize_url_is_keycloaks_public_one_with_pkce_and_openid() {
        let url = settings().authorize_url("st", "ch").expect("a url");
        assert!(url.starts_with(
            "https://sso.local.test:26001/realms/paytool/protocol/openid-connect/auth?"
        ));
        for part in [
            "response_type=code",
            "client_id=merchant-dashboard",
            "redirect_uri=https%3A%2F%2Fmerchant.local.test%3A26001%2Fcallback",
            "scope=openid",
            "state=st",
            "code_challenge=ch",
            "code_challenge_method=S256",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
        assert!(!url.contains("s3cret"));
    }

    #[test]
    fn the_end_session_url_sends_the_browser_back_home() {
        let url = settings().end_session_url(Some("idt")).expect("a url");
        assert!(url.starts_with(
            "https://sso.local.test:26001/realms/paytool/protocol/openid-connect/logout?"
        ));
        assert!(url.contains("id_token_hint=idt"));
        assert!(
            url.contains("post_logout_redirect_uri=https%3A%2F%2Fmerchant.local.test%3A26001%2F")
        );
    }

    #[test]
    fn only_unsafe_methods_need_the_csrf_token() {
        assert!(is_safe(&Method::GET));
        assert!(is_safe(&Method::HEAD));
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_safe(&method), "{method}");
        }
    }

    #[test]
    fn a_cookie_is_stored_as_the_lowercase_hex_of_its_sha_256() {
        // Stored sessions are found by this: the format must not change.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // pragma: allowlist secret (a SHA-256 test vector)
        );
    }

    #[test]
    fn an_id_tokens_name_and_email_are_read_and_garbage_gives_none() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"name":"Ramen Ya","email":"r@example.com"}"#);
        assert_eq!(
            id_token_names(&format!("h.{payload}.s")),
            (Some("Ramen Ya".into()), Some("r@example.com".into()))
        );
        assert_eq!(id_token_names("garbage"), (None, None));
    }
}
