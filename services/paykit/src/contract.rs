//! The bodies the platform's services send one another, one definition for sender and receiver.
//!
//! Each type serializes to exactly the JSON documented in `services/contracts/*.yaml`; the
//! contract tests check the wire form against those schemas. What is genuinely free-form (a
//! payment's metadata) stays a `serde_json::Value`.

use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

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

text_enum!(
    /// What a ledger account is for. Only wallets and merchants are opened through the API; the
    /// platform's own accounts (funding, fees, suspense) are made by the ledger itself.
    AccountKind, "account kind" {
        Wallet = "wallet",
        Merchant = "merchant",
        Funding = "funding",
        Fees = "fees",
        Suspense = "suspense",
    }
);

impl AccountKind {
    pub fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

// The orchestrator's API (services/contracts/orchestrator.yaml).

/// `POST /v1/accounts`: open a wallet or merchant account with the caller's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub id: Uuid,
    pub kind: AccountKind,
    pub currency: Currency,
    #[serde(default)]
    pub owner_ref: Option<String>,
}

/// A ledger account as the orchestrator shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub currency: String,
    pub kind: AccountKind,
    pub owner_ref: Option<String>,
    pub closed: bool,
}

/// An account's balance on the wire, in minor units of the account's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Credits less posted and pending debits: what a wallet may still spend.
    pub available: i64,
    /// Posted credits less posted debits.
    pub posted: i64,
    pub pending_debits: i64,
    pub pending_credits: i64,
    pub debits_posted: i64,
    pub credits_posted: i64,
}

/// `POST /v1/accounts` and `GET /v1/accounts/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountWithBalance {
    pub account: Account,
    pub balance: Balance,
}

/// One transfer of an account's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: Uuid,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// `posted`, `pending`, `post_pending` or `void_pending`.
    pub kind: String,
    pub pending_id: Option<Uuid>,
    /// What the transfer was for: `top_up`, `payment`, `fee`, `p2p`, `refund`, ...
    pub code: String,
    pub saga_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/accounts/{id}/transfers`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferPage {
    pub items: Vec<Transfer>,
    /// Give it back as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// `POST /v1/top-ups`: money from the platform's funding account into a wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTopUp {
    pub wallet_account_id: Uuid,
    pub amount: Money,
}

/// `POST /v1/payments`: a wallet pays a merchant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    pub wallet_account_id: Uuid,
    pub merchant_account_id: Uuid,
    pub amount: Money,
    /// The platform's fee in basis points of the amount, charged to the merchant.
    #[serde(default)]
    pub fee_bps: u32,
    #[serde(default)]
    pub reference: Option<String>,
    /// Carried into the payment's events (channel, payment request, payer): an object of at
    /// most 2 KiB, opaque to the ledger, so free-form.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// `POST /v1/transfers`: wallet to wallet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    pub from_account_id: Uuid,
    pub to_account_id: Uuid,
    pub amount: Money,
}

/// `POST /v1/refunds`: all or part of a completed payment back to the wallet that paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    pub payment_id: Uuid,
    pub amount: Money,
}

/// Why a saga was declined, voided or failed: a stable problem type and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(rename = "type")]
    pub type_slug: String,
    pub detail: String,
}

/// A saga as the orchestrator answers it and as its `payments.v1`/`ledger.v1` events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    pub id: Uuid,
    pub kind: SagaKind,
    pub state: SagaState,
    pub amount: Money,
    pub fee: Money,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    /// For a refund, the payment it refunds.
    pub payment_id: Option<Uuid>,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub reference: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    pub failure: Option<Failure>,
    pub created_at: DateTime<Utc>,
    /// When the saga's last step committed.
    pub updated_at: DateTime<Utc>,
    /// The balance of the wallet this saga moved (the payer's for a payment or a send, the
    /// funded one for a top-up) right after it: in the orchestrator's answer to a request, so
    /// that the caller need not read it again; never in events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<Balance>,
    /// True when this answer replays an earlier request with the same Idempotency-Key. Not in
    /// the body: the orchestrator says it in the `Idempotency-Replayed` header.
    #[serde(skip)]
    pub replayed: bool,
}

impl Saga {
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }
}

// merchant-api's internal API (services/contracts/merchant-api.yaml).

/// `POST /internal/v1/payment-requests/{id}/payments`: consumer-api pays a payment request
/// for a signed-in consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestPayment {
    /// The merchant the scanned QR code names: it must be the request's.
    pub merchant_id: Uuid,
    pub wallet_account_id: Uuid,
    /// Who pays, as the caller knows them (`consumer:<id>`); kept with the transaction.
    pub payer_ref: String,
    /// Only for a static request; a dynamic one carries its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// A merchant as a payment names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRef {
    pub id: Uuid,
    pub name: String,
}

/// The answer to [`RequestPayment`]: the payment, completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestPaid {
    pub id: Uuid,
    /// Always `completed`: a payment still under way is answered with a problem instead.
    pub status: SagaState,
    pub amount: Money,
    pub merchant: MerchantRef,
    pub payment_request_id: Uuid,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
    /// How much of it was refunded since (a replay answers the payment as it is now).
    #[serde(default)]
    pub refunded_amount: i64,
    /// The payer's wallet right after the payment, as the orchestrator answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<Balance>,
}

// consumer-api's internal API (services/contracts/consumer-api.yaml).

/// `POST /internal/v1/payment-codes/redemptions`: merchant-api redeems the one-time code a
/// merchant scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRedemption {
    pub code: String,
    pub merchant_id: Uuid,
    pub amount: Money,
}

/// The answer to [`CodeRedemption`]: whose wallet pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemedCode {
    pub consumer_id: Uuid,
    pub wallet_account_id: Uuid,
    pub currency: Currency,
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

    #[test]
    fn the_bodies_between_services_keep_the_json_they_had() {
        let id = Uuid::nil();
        let yen = Money::new(500, Currency::parse("JPY").expect("code"));
        let payment = NewPayment {
            wallet_account_id: id,
            merchant_account_id: id,
            amount: yen,
            fee_bps: 250,
            reference: None,
            metadata: Some(serde_json::json!({ "channel": "code" })),
        };
        assert_eq!(
            serde_json::to_value(&payment).expect("serializes"),
            serde_json::json!({
                "wallet_account_id": id, "merchant_account_id": id, "amount": yen,
                "fee_bps": 250, "reference": null, "metadata": { "channel": "code" },
            })
        );
        let account = NewAccount {
            id,
            kind: AccountKind::Wallet,
            currency: yen.currency,
            owner_ref: Some("consumer:1".into()),
        };
        assert_eq!(
            serde_json::to_value(&account).expect("serializes"),
            serde_json::json!({ "id": id, "kind": "wallet", "currency": "JPY", "owner_ref": "consumer:1" })
        );
        let paying = RequestPayment {
            merchant_id: id,
            wallet_account_id: id,
            payer_ref: "consumer:1".into(),
            amount: Some(yen),
        };
        assert_eq!(
            serde_json::to_value(&paying).expect("serializes"),
            serde_json::json!({ "merchant_id": id, "wallet_account_id": id, "payer_ref": "consumer:1", "amount": yen })
        );
        let redeemed = RedeemedCode {
            consumer_id: id,
            wallet_account_id: id,
            currency: yen.currency,
        };
        assert_eq!(
            serde_json::to_value(&redeemed).expect("serializes"),
            serde_json::json!({ "consumer_id": id, "wallet_account_id": id, "currency": "JPY" })
        );
    }
}
