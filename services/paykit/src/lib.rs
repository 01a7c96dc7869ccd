//! `paykit`: the one crate every paytool service shares.
//!
//! It holds what is the same in every service — layered configuration, telemetry, the
//! database pool, health endpoints, RFC 9457 problem responses, bearer-token auth, idempotency
//! keys and the HTTP server loop — so that each service's own code is only its domain (the
//! outbox joins it with events). One crate on purpose, not a crate per concern.

pub mod auth;
pub mod backoff;
pub mod config;
pub mod contract;
pub mod db;
pub mod events;
pub mod failpoints;
pub mod health;
pub mod idempotency;
pub mod internal;
pub mod keycloak;
pub mod metrics;
pub mod money;
pub mod problem;
pub mod resilience;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod web;

/// The conversions every service's one `Error` type needs from paykit's errors, `refused`,
/// which turns another service's refusal into that error, and `answered`, which reads another
/// service's answer as the contract type it promises. The type must have the variants
/// `Upstream(anyhow::Error)` (logged, answered 500), `Unavailable(resilience::Unavailable)` (a
/// dependency that is down: 503 with Retry-After), `Refused(Problem)` (a callee's refusal,
/// passed on), `DuplicateEmail` (Keycloak's 409 on registration) and `Invalid(String)` (a field
/// Keycloak's user profile refused: 422).
#[macro_export]
macro_rules! service_errors {
    ($error:ident) => {
        impl From<$crate::internal::CallError> for $error {
            fn from(error: $crate::internal::CallError) -> Self {
                match error {
                    $crate::internal::CallError::Unavailable(unavailable) => {
                        $error::Unavailable(unavailable)
                    }
                    other => $error::Upstream(::anyhow::Error::new(other)),
                }
            }
        }

        impl From<$crate::keycloak::KeycloakError> for $error {
            fn from(error: $crate::keycloak::KeycloakError) -> Self {
                match error {
                    $crate::keycloak::KeycloakError::Duplicate => $error::DuplicateEmail,
                    $crate::keycloak::KeycloakError::Rejected(reason) => $error::Invalid(reason),
                    // Keycloak down, or failing on its side (its database just failed over,
                    // say): an outage to retry, not a bug of ours.
                    unavailable @ ($crate::keycloak::KeycloakError::Unreachable(_)
                    | $crate::keycloak::KeycloakError::Refused {
                        status: 500..,
                        ..
                    }) => $error::Unavailable($crate::resilience::Unavailable {
                        destination: "keycloak",
                        reason: unavailable.to_string(),
                        retry_after_s: 1,
                    }),
                    other => $error::Upstream(::anyhow::Error::new(other)),
                }
            }
        }

        /// Another service's answer as this service's error: its problem, passed on, when it
        /// refused (4xx); a logged 500 otherwise.
        pub fn refused(answer: &$crate::internal::Answer) -> $error {
            answer
                .failure()
                .map_or_else($error::Upstream, $error::Refused)
        }

        /// Another service's answer as the contract type `T` it promises: the body when it
        /// succeeded, [`refused`] otherwise; a body that is not a `T` is a logged 500.
        pub fn answered<T: ::serde::de::DeserializeOwned>(
            answer: &$crate::internal::Answer,
        ) -> Result<T, $error> {
            if !answer.is_success() {
                return Err(refused(answer));
            }
            answer.parse().map_err($error::Upstream)
        }
    };
}

/// What a service's state gives the shared extractors and layers: the token verifier (for
/// `Principal`) and the idempotency store. The state needs fields `verifier` and `idempotency`.
#[macro_export]
macro_rules! state_parts {
    ($state:ident) => {
        impl ::axum::extract::FromRef<$state> for $crate::auth::Verifier {
            fn from_ref(state: &$state) -> Self {
                state.verifier.clone()
            }
        }

        impl ::axum::extract::FromRef<$state> for $crate::idempotency::Store {
            fn from_ref(state: &$state) -> Self {
                state.idempotency.clone()
            }
        }
    };
}
