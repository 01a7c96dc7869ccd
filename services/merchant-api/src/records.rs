//! The merchant's own record of its payments and refunds, written from the orchestrator's
//! events (payments.v1) together with the event the live stream sends, in one database
//! transaction with the consumer's inbox entry: each payment is recorded once.

use crate::events;
use paykit::contract::{self, SagaKind, SagaState};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// How a payment reached the merchant.
#[derive(Debug, Clone, Copy)]
pub enum Channel {
    /// The consumer scanned the merchant's QR code (merchant-presented).
    Qr,
    /// The merchant scanned the consumer's one-time code (consumer-presented).
    Code,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Qr => "qr",
            Channel::Code => "code",
        }
    }
}

/// A completed payment saga of the orchestrator, as far as the merchant needs it.
#[derive(Debug, Clone)]
pub struct Saga {
    pub id: Uuid,
    pub kind: SagaKind,
    pub state: SagaState,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub reference: Option<String>,
    /// The wallet (payments) or merchant (refunds) account debited, and the one credited.
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    /// For a refund, the payment it refunds.
    pub payment_id: Option<Uuid>,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    /// What merchant-api attached to a payment: channel, payment request, payer.
    pub metadata: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the saga's last step committed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<contract::Saga> for Saga {
    fn from(saga: contract::Saga) -> Self {
        Self {
            id: saga.id,
            kind: saga.kind,
            state: saga.state,
            amount: saga.amount.value,
            fee: saga.fee.value,
            currency: saga.amount.currency.to_string(),
            reference: saga.reference,
            debit_account_id: saga.debit_account_id,
            credit_account_id: saga.credit_account_id,
            payment_id: saga.payment_id,
            captured_amount: saga.captured_amount,
            refunded_amount: saga.refunded_amount,
            metadata: saga.metadata.unwrap_or(Value::Null),
            created_at: saga.created_at,
            updated_at: saga.updated_at,
        }
    }
}

impl Saga {
    /// Reads a saga as the orchestrator's events carry it.
    pub fn from_event(data: &Value) -> Result<Self, serde_json::Error> {
        contract::Saga::deserialize(data).map(Saga::from)
    }

    /// The channel merchant-api recorded in the payment's metadata.
    pub fn channel(&self) -> Option<Channel> {
        match self.metadata["channel"].as_str() {
            Some("qr") => Some(Channel::Qr),
            Some("code") => Some(Channel::Code),
            _ => None,
        }
    }

    pub fn payment_request(&self) -> Option<Uuid> {
        self.metadata["payment_request_id"]
            .as_str()
            .and_then(|id| id.parse().ok())
    }

    /// The transaction as the API shows it, before (or without) the recorded row: what a
    /// charge or refund answers, the same shape the list and the stream carry.
    pub fn transaction_view(&self) -> Value {
        let status = match self.refunded_amount {
            0 => "completed",
            r if r >= self.amount => "refunded",
            _ => "partially_refunded",
        };
        let (kind, status) = if self.kind == SagaKind::Refund {
            ("refund", "completed")
        } else {
            ("payment", status)
        };
        view(&TransactionRow {
            id: self.id,
            kind: kind.to_string(),
            status: status.to_string(),
            channel: self.channel().map(|c| c.as_str().to_string()),
            amount_value: self.amount,
            fee_value: if kind == "payment" { self.fee } else { 0 },
            refunded_value: if kind == "payment" {
                self.refunded_amount
            } else {
                0
            },
            currency: self.currency.clone(),
            payment_id: self.payment_id,
            payment_request_id: self.payment_request(),
            reference: self.reference.clone(),
            created_at: self.created_at,
            completed_at: self.updated_at,
        })
    }
}

/// A row of `transactions` as the list and [`read`] select it (the same columns in both, checked
/// against the schema at compile time).
pub struct TransactionRow {
    pub id: Uuid,
    pub kind: String,
    pub status: String,
    pub channel: Option<String>,
    pub amount_value: i64,
    pub fee_value: i64,
    pub refunded_value: i64,
    pub currency: String,
    pub payment_id: Option<Uuid>,
    pub payment_request_id: Option<Uuid>,
    pub reference: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: chrono::DateTime<chrono::Utc>,
}

/// A transaction as the API and the stream show it: money as value + currency, and for a
/// payment what the merchant keeps of it.
pub fn view(row: &TransactionRow) -> Value {
    let currency = &row.currency;
    let money = |value: i64| json!({ "value": value, "currency": currency });
    json!({
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "channel": row.channel,
        "amount": money(row.amount_value),
        "fee": money(row.fee_value),
        "net": money(row.amount_value - row.fee_value),
        "refunded": money(row.refunded_value),
        "payment_id": row.payment_id,
        "payment_request_id": row.payment_request_id,
        "reference": row.reference,
        "created_at": row.created_at,
        "completed_at": row.completed_at,
    })
}

async fn read(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<TransactionRow, sqlx::Error> {
    sqlx::query_as!(
        TransactionRow,
        r#"SELECT id, kind, status, channel, amount_value, fee_value, refunded_value, currency::text AS "currency!",
                payment_id, payment_request_id, reference, created_at, completed_at
         FROM transactions WHERE id = $1"#,
        id
    )
    .fetch_one(executor)
    .await
}

/// Records a completed payment once (a redelivery finds the row and writes nothing), marks a
/// dynamic payment request paid, and appends `payment.completed` to the merchant's stream.
pub async fn record_payment(
    tx: &mut Transaction<'_, Postgres>,
    merchant: Uuid,
    saga: &Saga,
) -> Result<(), sqlx::Error> {
    let payment_request = saga.payment_request();
    let channel = saga.channel().unwrap_or(Channel::Qr);
    let payer_ref = saga.metadata["payer_ref"].as_str();
    let inserted = sqlx::query!(
        "INSERT INTO transactions (id, merchant_id, kind, status, channel, amount_value, fee_value, currency, payment_request_id, reference, payer_ref, created_at, completed_at)
         VALUES ($1, $2, 'payment', 'completed', $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
        saga.id,
        merchant,
        channel.as_str(),
        saga.amount,
        saga.fee,
        &saga.currency,
        payment_request,
        saga.reference.as_deref(),
        payer_ref,
        saga.created_at,
        saga.updated_at,
    )
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        let transaction = view(&read(&mut **tx, saga.id).await?);
        if let Some(request) = payment_request {
            sqlx::query!(
                "UPDATE payment_requests SET status = 'paid', payment_id = $2 WHERE id = $1 AND kind = 'dynamic'",
                request,
                saga.id
            )
            .execute(&mut **tx)
            .await?;
        }
        events::append(tx, merchant, "payment.completed", &transaction).await?;
    }
    Ok(())
}

/// Records a completed refund once, updates what was refunded of its payment, and appends
/// `payment.refunded` with both. `Ok(false)` when the payment is not recorded here.
pub async fn record_refund(
    tx: &mut Transaction<'_, Postgres>,
    merchant: Uuid,
    refund: &Saga,
) -> Result<bool, sqlx::Error> {
    let Some(payment) = refund.payment_id else {
        return Ok(false);
    };
    let known: bool = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM transactions WHERE id = $1 AND merchant_id = $2 AND kind = 'payment') AS "exists!""#,
        payment,
        merchant
    )
    .fetch_one(&mut **tx)
    .await?;
    if !known {
        return Ok(false);
    }
    let inserted = sqlx::query!(
        "INSERT INTO transactions (id, merchant_id, kind, status, amount_value, currency, payment_id, reference, created_at, completed_at)
         VALUES ($1, $2, 'refund', 'completed', $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        refund.id,
        merchant,
        refund.amount,
        &refund.currency,
        payment,
        refund.reference.as_deref(),
        refund.created_at,
        refund.updated_at,
    )
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query!(
            "UPDATE transactions SET refunded_value = refunded_value + $2,
                    status = CASE WHEN refunded_value + $2 = amount_value THEN 'refunded' ELSE 'partially_refunded' END
             WHERE id = $1",
            payment,
            refund.amount
        )
        .execute(&mut **tx)
        .await?;
        let refund_view = view(&read(&mut **tx, refund.id).await?);
        let payment_view = view(&read(&mut **tx, payment).await?);
        let data = json!({ "refund": refund_view, "payment": payment_view });
        events::append(tx, merchant, "payment.refunded", &data).await?;
    }
    Ok(true)
}
