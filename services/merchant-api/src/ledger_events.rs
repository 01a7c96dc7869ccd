//! The orchestrator's `payments.v1` events, consumed into the merchant's transaction list and
//! live stream. The consumer's inbox, the transaction row and the stream event are written in
//! one database transaction: a redelivered event changes nothing.

use crate::records::{record_payment, record_refund, Saga};
use paykit::contract::SagaKind;
use paykit::events::{Envelope, Handler, HandlerError, HandlerFuture};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// The consumer group (and inbox scope) of this consumer.
pub const CONSUMER: &str = "merchant-api.payments";
pub const TOPICS: &[&str] = &["payments.v1"];

pub struct PaymentEvents;

impl Handler for PaymentEvents {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: &'a Envelope,
    ) -> HandlerFuture<'a> {
        Box::pin(apply(tx, event))
    }
}

async fn apply(
    tx: &mut Transaction<'static, Postgres>,
    event: &Envelope,
) -> Result<(), HandlerError> {
    if !matches!(
        event.kind.as_str(),
        "payment.completed" | "refund.completed"
    ) {
        // Declined, voided and failed sagas moved no money to or from a merchant.
        return Ok(());
    }
    let saga = Saga::from_event(&event.data).map_err(|error| {
        HandlerError::Poison(format!("{} does not carry a saga: {error}", event.kind))
    })?;
    let account = if saga.kind == SagaKind::Refund {
        saga.debit_account_id
    } else {
        saga.credit_account_id
    };
    let merchant: Option<Uuid> = sqlx::query_scalar!(
        "SELECT id FROM merchants WHERE ledger_account_id = $1",
        account
    )
    .fetch_optional(&mut **tx)
    .await?;
    let Some(merchant) = merchant else {
        // The ledger also serves merchant accounts this service did not open (the ledger
        // benchmark's): not ours to record.
        tracing::debug!(%account, "payment event for an account of no merchant here");
        return Ok(());
    };
    if saga.kind == SagaKind::Refund {
        // The payment's event comes first: both are keyed by the merchant's account.
        if !record_refund(tx, merchant, &saga).await? {
            return Err(HandlerError::Poison(format!(
                "refund {} of a payment not recorded here",
                saga.id
            )));
        }
    } else {
        record_payment(tx, merchant, &saga).await?;
    }
    Ok(())
}
