//! The merchant's own record of its payments and refunds, written from the orchestrator's
//! answer together with the event the live stream sends, in one database transaction.

use crate::error::Error;
use crate::events;
use crate::http::Merchant;
use serde_json::{json, Value};
use sqlx::PgPool;
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
    fn as_str(self) -> &'static str {
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
    pub state: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub reference: Option<String>,
}

impl Saga {
    /// Reads the orchestrator's saga view; `None` when it lacks what a payment has.
    pub fn from_view(view: &Value) -> Option<Self> {
        Some(Self {
            id: view["id"].as_str()?.parse().ok()?,
            state: view["state"].as_str()?.to_string(),
            amount: view["amount"]["value"].as_i64()?,
            fee: view["fee"]["value"].as_i64().unwrap_or(0),
            currency: view["amount"]["currency"].as_str()?.to_string(),
            reference: view["reference"].as_str().map(str::to_string),
        })
    }
}

pub const TRANSACTION_COLUMNS: &str = "id, kind, status, channel, amount_value, fee_value, refunded_value, currency::text, payment_id, payment_request_id, reference, created_at";

pub type TransactionRow = (
    Uuid,
    String,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    String,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
);

/// A transaction as the API and the stream show it: money as value + currency, and for a
/// payment what the merchant keeps of it.
pub fn view(row: &TransactionRow) -> Value {
    let (
        id,
        kind,
        status,
        channel,
        amount,
        fee,
        refunded,
        currency,
        payment,
        request,
        reference,
        at,
    ) = row;
    let money = |value: i64| json!({ "value": value, "currency": currency });
    json!({
        "id": id,
        "kind": kind,
        "status": status,
        "channel": channel,
        "amount": money(*amount),
        "fee": money(*fee),
        "net": money(amount - fee),
        "refunded": money(*refunded),
        "payment_id": payment,
        "payment_request_id": request,
        "reference": reference,
        "created_at": at,
    })
}

async fn read(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<TransactionRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(executor)
    .await
}

/// Records a completed payment once (a replay finds the row and writes nothing), marks a dynamic
/// payment request paid, and appends `payment.completed`. Returns the transaction's view.
pub async fn record_payment(
    pool: &PgPool,
    merchant: &Merchant,
    saga: &Saga,
    channel: Channel,
    payment_request: Option<Uuid>,
    payer_ref: &str,
) -> Result<Value, Error> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO transactions (id, merchant_id, kind, status, channel, amount_value, fee_value, currency, payment_request_id, reference, payer_ref)
         VALUES ($1, $2, 'payment', 'completed', $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    )
    .bind(saga.id)
    .bind(merchant.id)
    .bind(channel.as_str())
    .bind(saga.amount)
    .bind(saga.fee)
    .bind(&saga.currency)
    .bind(payment_request)
    .bind(&saga.reference)
    .bind(payer_ref)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let row = read(&mut *tx, saga.id).await?;
    let transaction = view(&row);
    if inserted {
        if let Some(request) = payment_request {
            sqlx::query(
                "UPDATE payment_requests SET status = 'paid', payment_id = $2 WHERE id = $1 AND kind = 'dynamic'",
            )
            .bind(request)
            .bind(saga.id)
            .execute(&mut *tx)
            .await?;
        }
        events::append(&mut tx, merchant.id, "payment.completed", &transaction).await?;
    }
    tx.commit().await?;
    Ok(transaction)
}

/// Records a completed refund of `payment` once, updates what was refunded of the payment, and
/// appends `payment.refunded` with both. Returns the refund's view.
pub async fn record_refund(
    pool: &PgPool,
    merchant: &Merchant,
    payment: Uuid,
    refund: &Saga,
) -> Result<Value, Error> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO transactions (id, merchant_id, kind, status, amount_value, currency, payment_id, reference)
         VALUES ($1, $2, 'refund', 'completed', $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(refund.id)
    .bind(merchant.id)
    .bind(refund.amount)
    .bind(&refund.currency)
    .bind(payment)
    .bind(&refund.reference)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query(
            "UPDATE transactions SET refunded_value = refunded_value + $2,
                    status = CASE WHEN refunded_value + $2 = amount_value THEN 'refunded' ELSE 'partially_refunded' END
             WHERE id = $1",
        )
        .bind(payment)
        .bind(refund.amount)
        .execute(&mut *tx)
        .await?;
    }
    let refund_view = view(&read(&mut *tx, refund.id).await?);
    if inserted {
        let payment_view = view(&read(&mut *tx, payment).await?);
        let data = json!({ "refund": refund_view, "payment": payment_view });
        events::append(&mut tx, merchant.id, "payment.refunded", &data).await?;
    }
    tx.commit().await?;
    Ok(refund_view)
}
