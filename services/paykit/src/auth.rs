//! Bearer-token authentication: Keycloak JWTs verified locally against the realm's JWKS.
//!
//! Checked: the signature (RS256 keys from the JWKS, cached and refetched when a token names an
//! unknown `kid`), `iss`, `aud`, `exp` and `nbf`. `alg: none` and HMAC algorithms are refused
//! because only the JWKS's asymmetric keys are ever used to verify.
//!
//! A verified token is kept by its SHA-256 until it expires: the same token comes back at every
//! hop of a payment and with every request of a session, and an RSA verification costs more
//! than the rest of a small request.

use crate::problem::Problem;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::RwLock;

/// A token naming an unknown key triggers at most one JWKS fetch per this interval, so that a
/// flood of forged `kid`s cannot turn into a flood of requests to Keycloak.
const JWKS_REFETCH_MIN_INTERVAL_MS: u64 = 10_000;
const JWKS_FETCH_TIMEOUT_MS: u64 = 3_000;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_S: u64 = 5;
/// At most this many verified tokens are kept; past it the expired ones go, and if that is not
/// enough, all of them (each is verified again on its next use).
const VERIFIED_TOKENS_MAX: usize = 10_000;
/// Under the seeded weakness `keys-dropped-when-refresh-fails`: how long keys are held before
/// they are fetched again (and dropped if that fails).
const WEAK_KEYS_TTL_MS: u64 = 5_000;
const KEYS_DROPPED: &str = "paykit.weakness.keys-dropped-when-refresh-fails";

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// The `iss` tokens must carry: the realm's public URL.
    pub issuer: String,
    /// Where to fetch the signing keys (Keycloak's loopback URL; no need to go through the gateway).
    pub jwks_url: String,
    /// The `aud` tokens must contain: this service's client id.
    pub audience: String,
}

/// Who made the request, from a verified token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub`: the user's or the service account's id.
    pub subject: String,
    /// `azp`: the client the token was issued to.
    pub client_id: String,
    pub realm_roles: Vec<String>,
    pub client_roles: HashMap<String, Vec<String>>,
}

impl Principal {
    pub fn has_realm_role(&self, role: &str) -> bool {
        self.realm_roles.iter().any(|r| r == role)
    }

    pub fn has_client_role(&self, client: &str, role: &str) -> bool {
        self.client_roles
            .get(client)
            .is_some_and(|roles| roles.iter().any(|r| r == role))
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    /// Seconds since the epoch; required by the validation, so always there once it passed.
    exp: Option<u64>,
    sub: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    realm_access: Option<Roles>,
    #[serde(default)]
    resource_access: Option<HashMap<String, Roles>>,
}

#[derive(Debug, Deserialize, Default)]
struct Roles {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the signing keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    pub fn problem(&self) -> Problem {
        match self {
            AuthError::Missing => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            )
            .with_detail("Send a bearer token from the paytool realm in the Authorization header."),
            AuthError::Invalid(reason) => {
                Problem::new(StatusCode::UNAUTHORIZED, "invalid-token", "Invalid token")
                    .with_detail(format!("The bearer token was rejected: {reason}."))
            }
            AuthError::KeysUnavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth-unavailable",
                "Authentication temporarily unavailable",
            )
            .with_detail("The token's signing keys cannot be fetched right now; retry shortly."),
        }
    }
}

struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// A token that passed, and until when its answer holds (its `exp`, without the leeway).
struct Verified {
    principal: Principal,
    until: Instant,
}

type VerifiedTokens = HashMap<[u8; 32], Verified>;

/// Verifies tokens; cheap to clone (shared key cache and verified tokens).
#[derive(Clone)]
pub struct Verifier {
    settings: Arc<AuthSettings>,
    keys: Arc<RwLock<Keys>>,
    verified: Arc<std::sync::Mutex<VerifiedTokens>>,
    /// How many verifications were answered from `verified`.
    verified_hits: Arc<std::sync::atomic::AtomicU64>,
    http: reqwest::Client,
}

impl Verifier {
    pub fn new(settings: AuthSettings) -> anyhow::Result<Self> {
        Ok(Self {
            settings: Arc::new(settings),
            keys: Arc::new(RwLock::new(Keys {
                by_kid: HashMap::new(),
                fetched_at: None,
            })),
            verified: Arc::new(std::sync::Mutex::new(HashMap::new())),
            verified_hits: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(JWKS_FETCH_TIMEOUT_MS))
                .build()?,
        })
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        // The seeded weakness that fetches the keys for every token keeps nothing, this either.
        // So does the one that drops its keys: what it verified is held no longer than they.
        let uncached = crate::failpoints::weak("paykit.weakness.signing-keys-not-cached")
            || crate::failpoints::weak(KEYS_DROPPED);
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if !uncached {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = verified.get(&digest).filter(|v| v.until > Instant::now()) {
                self.verified_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(hit.principal.clone());
            }
        }
        let (principal, expires_in) = self.verify_signed(token).await?;
        if !uncached {
            self.keep(digest, principal.clone(), expires_in);
        }
        Ok(principal)
    }

    /// How many verified tokens are kept now, and how many verifications they answered.
    pub fn verified_tokens(&self) -> (usize, u64) {
        let kept = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        (
            kept,
            self.verified_hits
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    fn keep(&self, digest: [u8; 32], principal: Principal, expires_in: Duration) {
        if expires_in.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_TOKENS_MAX {
            verified.retain(|_, v| v.until > now);
            if verified.len() >= VERIFIED_TOKENS_MAX {
                verified.clear();
            }
        }
        verified.insert(
            digest,
            Verified {
                principal,
                until: now + expires_in,
            },
        );
        assert!(verified.len() <= VERIFIED_TOKENS_MAX);
    }

    /// The signature and the claims checked: who the token names, and how long until it expires.
    async fn verify_signed(&self, token: &str) -> Result<(Principal, Duration), AuthError> {
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key (kid)".into()))?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expires_in = Duration::from_secs(claims.exp.unwrap_or(0).saturating_sub(now_s));
        let principal = Principal {
            subject: claims.sub.unwrap_or_default(),
            client_id: claims.azp.unwrap_or_default(),
            realm_roles: claims.realm_access.unwrap_or_default().roles,
            client_roles: claims
                .resource_access
                .unwrap_or_default()
                .into_iter()
                .map(|(client, roles)| (client, roles.roles))
                .collect(),
        };
        Ok((principal, expires_in))
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        // Seeded weakness (chaos bench): no key cache, Keycloak's key set fetched for every
        // token verified.
        let uncached = crate::failpoints::weak("paykit.weakness.signing-keys-not-cached");
        // Seeded weakness (chaos bench): keys held a few seconds, then fetched again, and
        // dropped when that fails (no serving the ones it has while Keycloak is away).
        let stale = |keys: &Keys| {
            crate::failpoints::weak(KEYS_DROPPED)
                && keys
                    .fetched_at
                    .is_some_and(|at| at.elapsed() >= Duration::from_millis(WEAK_KEYS_TTL_MS))
        };
        {
            let keys = self.keys.read().await;
            if let (Some(key), false) = (keys.by_kid.get(kid), uncached || stale(&keys)) {
                return Ok(key.clone());
            }
        }
        let mut keys = self.keys.write().await;
        let stale = stale(&keys);
        if let (Some(key), false) = (keys.by_kid.get(kid), uncached || stale) {
            return Ok(key.clone());
        }
        if stale {
            keys.by_kid.clear();
            keys.fetched_at = None;
        }
        let recently = !uncached
            && keys.fetched_at.is_some_and(|at| {
                at.elapsed() < Duration::from_millis(JWKS_REFETCH_MIN_INTERVAL_MS)
            });
        if recently {
            return Err(AuthError::Invalid(format!("unknown signing key {kid}")));
        }
        let set: JwkSet = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
        keys.fetched_at = Some(Instant::now());
        keys.by_kid = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect();
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::Invalid(format!("unknown signing key {kid}")))
    }
}

/// Extracts a verified [`Principal`] from `Authorization: Bearer …`, answering 401 otherwise.
/// A principal a layer before the handler established already (a session cookie, see
/// [`crate::web::authenticate`]; the idempotency layer) is taken as it is.
impl<S> FromRequestParts<S> for Principal
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let verifier = Verifier::from_ref(state);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Missing)
            .map_err(|e| e.problem())?;
        verifier.verify(token).await.map_err(|error| {
            tracing::info!(%error, "token rejected");
            error.problem()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        Verifier::new(AuthSettings {
            issuer: "https://sso.local.test/realms/paytool".into(),
            // Nothing listens here: tests below must be decided before any key is fetched.
            jwks_url: "http://127.0.0.1:1/certs".into(),
            audience: "orchestrator".into(),
        })
        .expect("verifier")
    }

    fn b64(json: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    #[tokio::test]
    async fn an_unsigned_token_is_refused_before_any_key_is_fetched() {
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(
                r#"{"sub":"x","iss":"https://sso.local.test/realms/paytool","aud":"orchestrator","exp":9999999999}"#
            )
        );
        assert!(matches!(
            verifier().verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn an_hmac_token_is_refused() {
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"HS256","typ":"JWT","kid":"k"}"#),
            b64(r#"{"sub":"x"}"#)
        );
        let error = verifier().verify(&token).await.expect_err("refused");
        assert!(error.to_string().contains("not accepted"), "{error}");
    }

    #[tokio::test]
    async fn garbage_is_an_invalid_token_not_an_error_page() {
        let error = verifier().verify("not-a-jwt").await.expect_err("refused");
        assert_eq!(error.problem().status, 401);
    }
}
