//! The bodies the platform's services send one another, one definition for sender and receiver.
//!
//! Each type serializes to exactly the JSON documented in `services/contracts/*.yaml`; the
//! contract tests check the wire form against those schemas. What is genuinely free-form (a
//! payment's metadata) stays a `serde_json::Value`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A text enum stored in PostgreSQL as the same snake_case text it has on the wire, so rows
/// written before it was typed read back unchanged. A value the type does not know is a decode
/// error, never a silent fallthrough.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownValue {
                        what: $what,
                        value: other.chars().take(64).collect(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Compares with the wire text, as code and tests written against strings do.
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }
    };
}

/// A text value no variant of the enum spells.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a known {what}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

text_enum!(
    /// What a saga does.
    SagaKind, "saga kind" {
        /// Funding → wallet.
        TopUp = "top_up",
        /// Wallet → merchant: reserve, confirm, capture with the fee.
        Payment = "payment",
        /// Wallet → wallet.
        P2p = "p2p",
        /// Merchant → the wallet that paid, never above what was captured.
        Refund = "refund",
    }
);

text_enum!(
    /// Where a saga is. See the state machine in the orchestrator's `saga` module.
    SagaState, "saga state" {
        Started = "started",
        Reserved = "reserved",
        MerchantConfirmed = "merchant_confirmed",
        Captured = "captured",
        Completed = "completed",
        Compensating = "compensating",
        Declined = "declined",
        Voided = "voided",
        Failed = "failed",
    }
);

impl SagaState {
    /// The states a saga never leaves: its outcome.
    pub const TERMINAL: &'static [SagaState] = &[
        SagaState::Completed,
        SagaState::Declined,
        SagaState::Voided,
        SagaState::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_saga_state_reads_back_from_its_own_text() {
        for state in SagaState::ALL {
            assert_eq!(state.as_str().parse::<SagaState>(), Ok(*state));
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                serde_json::Value::String(state.as_str().into())
            );
        }
        for kind in SagaKind::ALL {
            assert_eq!(kind.as_str().parse::<SagaKind>(), Ok(*kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                serde_json::Value::String(kind.as_str().into())
            );
        }
    }

    #[test]
    fn an_unknown_saga_state_is_an_error_not_a_default() {
        let error = "settling".parse::<SagaState>().expect_err("unknown");
        assert_eq!(error.to_string(), "'settling' is not a known saga state");
        assert!(serde_json::from_str::<SagaKind>("\"loan\"").is_err());
    }

    #[test]
    fn only_outcomes_are_terminal() {
        let terminal: Vec<&str> = SagaState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(terminal, ["completed", "declined", "voided", "failed"]);
    }
}
