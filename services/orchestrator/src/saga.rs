//! Payment sagas: persisted state machines driven one step per database transaction.
//!
//! A step applies its ledger transfers (ids derived from the saga id and the step name, so a
//! replayed step finds its own transfer) and moves the saga's state in the same transaction, so
//! every step happens exactly once or not at all. A crash leaves a saga in some state; the
//! recovery worker picks up unfinished sagas and drives them on. Every wait has a bound: a
//! reservation expires, a saga has a deadline after which it compensates.
//!
//! ```text
//! payment: started ─reserve─▶ reserved ─confirm─▶ merchant_confirmed ─capture+fee─▶ captured ─▶ completed
//!             │ insufficient funds        │ merchant closed        │ reservation expired
//!             ▼                           ▼                        ▼
//!          declined                  compensating ─void─▶ voided ◀─┘
//! top_up:  started ─▶ completed            p2p: started ─▶ completed | declined
//! refund:  started ─▶ completed | declined (never above what was captured)
//! ```

use crate::ledger::{self, AccountKind, Applied, LedgerError, NewTransfer, TransferKind};
use paykit::money::{fee_for, Currency, Money};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// No saga takes more steps than this in one drive; the longest path has five.
const STEPS_MAX: usize = 8;
/// The recovery worker looks at this many due sagas per round.
const RECOVERY_BATCH: i64 = 100;
const RECOVERY_INTERVAL_MS: u64 = 500;
/// The fee a payment may carry, in basis points: at most 10 %.
pub const FEE_BPS_MAX: u32 = 1_000;
/// The largest metadata object a payment carries, serialized.
pub const METADATA_MAX_BYTES: usize = 2_048;

#[derive(Debug, Clone, Deserialize)]
pub struct SagaSettings {
    /// How long a payment's reservation holds before it voids itself.
    #[serde(default = "default_reserve_timeout_ms")]
    pub reserve_timeout_ms: u64,
    /// After this, an unfinished saga stops moving forward and compensates.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Backoff before a failed step is tried again.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Test hook: `after:<state>` aborts the process right after a saga commits that state.
    /// A payment goes step by step while it is set, so that every state can be reached.
    #[serde(default)]
    pub failpoint: Option<String>,
    /// A payment between two accounts of this ledger is written in one commit: the saga row
    /// already terminal, its transfers and its event together. False drives every payment
    /// step by step (reserve, confirm, capture, complete: four commits), as recovery does.
    #[serde(default = "default_single_commit")]
    pub single_commit: bool,
    /// Payments written in one commit together, at most (group commit, with `single_commit`):
    /// those that arrive while a group is being written go in the next one. 1 writes each
    /// payment in a commit of its own.
    #[serde(default = "default_group_max")]
    pub group_max: usize,
}

/// The largest group a setting may ask for: two transfers a payment within the ledger's bound.
pub const GROUP_MAX: usize = ledger::GROUP_TRANSFERS_MAX / 2;
/// Payments waiting for a group writer, at most; past it a payment waits to be queued (its
/// request's deadline bounds that).
const GROUP_QUEUE_MAX: usize = 1_024;
/// Groups written at once: one is being collected while the other commits.
const GROUP_WRITERS: usize = 2;

fn default_reserve_timeout_ms() -> u64 {
    30_000
}
fn default_deadline_ms() -> u64 {
    60_000
}
fn default_retry_backoff_ms() -> u64 {
    500
}
fn default_single_commit() -> bool {
    true
}
fn default_group_max() -> usize {
    32
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            reserve_timeout_ms: default_reserve_timeout_ms(),
            deadline_ms: default_deadline_ms(),
            retry_backoff_ms: default_retry_backoff_ms(),
            failpoint: None,
            single_commit: default_single_commit(),
            group_max: default_group_max(),
        }
    }
}

pub use paykit::contract::{SagaKind, SagaState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    TopUp {
        wallet_account_id: Uuid,
        amount: Money,
    },
    Payment {
        wallet_account_id: Uuid,
        merchant_account_id: Uuid,
        amount: Money,
        fee_bps: u32,
        reference: Option<String>,
        /// Carried into the payment's events; opaque to the ledger (an object, at most 2 KiB).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Value>,
    },
    P2p {
        from_account_id: Uuid,
        to_account_id: Uuid,
        amount: Money,
    },
    Refund {
        payment_id: Uuid,
        amount: Money,
    },
}

impl Request {
    pub fn kind(&self) -> SagaKind {
        match self {
            Request::TopUp { .. } => SagaKind::TopUp,
            Request::Payment { .. } => SagaKind::Payment,
            Request::P2p { .. } => SagaKind::P2p,
            Request::Refund { .. } => SagaKind::Refund,
        }
    }
}

/// A saga as the orchestrator answers it: the contract's type, one definition for the
/// orchestrator and the services that read it.
pub use paykit::contract::{Failure, Saga as SagaView};

/// Why a request was refused before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Invalid(String),
    #[error("account {account} is a {actual} account, this needs a {expected} account")]
    WrongAccountKind {
        account: Uuid,
        actual: &'static str,
        expected: &'static str,
    },
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("payment {0} does not exist")]
    PaymentNotFound(Uuid),
    #[error("payment {0} is not completed, so nothing can be refunded")]
    PaymentNotCompleted(Uuid),
    #[error("refunding {requested} would exceed what is left to refund ({refundable}) of payment {payment}")]
    RefundExceedsCapture {
        payment: Uuid,
        requested: i64,
        refundable: i64,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Clone)]
pub struct Sagas {
    pool: PgPool,
    settings: SagaSettings,
    /// The platform's accounts by kind and currency, as [`Sagas::system_account`] learnt them.
    system: std::sync::Arc<std::sync::Mutex<SystemAccounts>>,
    /// The group writers' queue, started by the first payment that needs it.
    groups: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<GroupJob>>>,
}

/// One payment waiting for its group's commit, and where its outcome goes: `None` when its
/// Idempotency-Key was taken already (answered as a replay), an error when nothing of it was
/// written (it then goes step by step).
struct GroupJob {
    /// The request's trace, which the payment's event continues.
    traceparent: String,
    caller: String,
    idempotency_key: String,
    hash: String,
    plan: Plan,
    answer: tokio::sync::oneshot::Sender<Result<Option<SagaView>, SagaError>>,
}

type SystemAccounts = std::collections::HashMap<(&'static str, Currency), Uuid>;
/// Kinds of system account times ISO 4217's currencies, with room: a bound no ledger reaches.
const SYSTEM_ACCOUNTS_MAX: usize = 4 * 1_000;

/// What a step decided: the saga's next state and what changes with it.
struct Transition {
    state: SagaState,
    failure: Option<Failure>,
    captured_amount: Option<i64>,
}

impl Transition {
    fn to(state: SagaState) -> Self {
        Self {
            state,
            failure: None,
            captured_amount: None,
        }
    }
    fn failed(state: SagaState, type_slug: &str, detail: impl Into<String>) -> Self {
        Self {
            state,
            failure: Some(Failure {
                type_slug: type_slug.into(),
                detail: detail.into(),
            }),
            captured_amount: None,
        }
    }
}

/// The stable problem type of a ledger refusal.
pub fn failure_type(error: &LedgerError) -> &'static str {
    match error {
        LedgerError::AccountNotFound(_) => "account-not-found",
        LedgerError::AccountClosed(_) => "account-closed",
        LedgerError::CurrencyMismatch { .. } => "currency-mismatch",
        LedgerError::UnknownCurrency(_) => "unknown-currency",
        LedgerError::SameAccount => "same-account",
        LedgerError::BadAmount(_) | LedgerError::PostExceedsPending { .. } => "invalid-amount",
        LedgerError::InsufficientFunds { .. } => "insufficient-funds",
        LedgerError::ExistsWithDifferentContent(_) => "transfer-id-reused",
        LedgerError::PendingExpired(_) => "reservation-expired",
        LedgerError::PendingNotFound(_)
        | LedgerError::PendingAlreadyResolved(..)
        | LedgerError::NotPending(_) => "reservation-resolved",
        LedgerError::BadBatch(_) => "invalid-batch",
        LedgerError::Database(_) => "internal",
    }
}

fn step_id(saga: Uuid, step: &str) -> Uuid {
    Uuid::new_v5(&saga, step.as_bytes())
}

impl Sagas {
    pub fn new(pool: PgPool, settings: SagaSettings) -> Self {
        assert!(
            (1..=GROUP_MAX).contains(&settings.group_max),
            "saga.group_max is 1 to {GROUP_MAX}"
        );
        Self {
            pool,
            settings,
            system: Default::default(),
            groups: Default::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts (or, for a known Idempotency-Key, replays) a saga and drives it as far as it goes.
    pub async fn start(
        &self,
        caller: &str,
        idempotency_key: &str,
        request: Request,
    ) -> Result<SagaView, SagaError> {
        if idempotency_key.is_empty() || idempotency_key.len() > 255 {
            return Err(SagaError::Invalid(
                "the Idempotency-Key must be 1 to 255 characters".into(),
            ));
        }
        let hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&request).map_err(|e| SagaError::Invalid(e.to_string()))?,
        ));
        let kind = request.kind();
        // The key is looked up only when it matters: a new request's key is claimed by the
        // insert of its saga (a unique constraint), which answers a replay or a concurrent
        // duplicate as well, so the common case reads nothing first. A request refused while
        // planning may still be the replay of one that went through (its account closed since,
        // a refund that took what was left): its stored outcome is the answer then.
        let plan = match self.plan(&request).await {
            Ok(plan) => plan,
            Err(error) => {
                return match self.stored(caller, kind, idempotency_key).await? {
                    Some((id, stored_hash)) => self.replay(id, &stored_hash, &hash).await,
                    None => Err(error),
                }
            }
        };
        if kind == SagaKind::Payment && self.single_commit() {
            // Like `saga.drive` for a stepped saga: the span whose `saga.id` is how `paytool
            // trace ID` finds the payment's trace, and the parent of its event's.
            let span = tracing::info_span!(
                "saga.commit",
                "saga.id" = tracing::field::Empty,
                "saga.kind" = kind.as_str(),
                "saga.state" = tracing::field::Empty,
                "saga.group_max" = self.settings.group_max,
            );
            let outcome = async {
                if self.settings.group_max > 1 {
                    self.pay_in_group(caller, idempotency_key, &hash, plan.clone())
                        .await
                } else {
                    let traceparent = paykit::telemetry::current_traceparent()
                        .unwrap_or_else(paykit::events::new_traceparent);
                    self.pay_at_once(caller, idempotency_key, &hash, &plan, &traceparent)
                        .await
                }
            }
            .instrument(span.clone())
            .await;
            if let Ok(Some(view)) = &outcome {
                span.record("saga.id", tracing::field::display(view.id));
                span.record("saga.state", view.state.as_str());
            }
            match outcome {
                Ok(Some(view)) => return Ok(view),
                Ok(None) => {
                    return self
                        .replay_winner(caller, kind, idempotency_key, &hash)
                        .await
                }
                // Nothing of it was committed (or, after a lost COMMIT, the saga exists and the
                // insert below answers its replay): the step-by-step saga takes the payment,
                // with its retries and recovery.
                Err(error) => {
                    tracing::warn!(%error, "a payment's single commit failed; it goes step by step")
                }
            }
        }
        let id = Uuid::new_v4();
        // `$13::int8`: the i64 it was always sent; without the cast PostgreSQL would infer a
        // float8 parameter from `* interval`. The metadata (jsonb) is `as _` and read back with
        // a type override: the macros map jsonb only with sqlx's `json` feature, which the
        // workspace does not enable (encoding and decoding serde_json values need no feature).
        let inserted: Option<Uuid> = sqlx::query_scalar!(
            "INSERT INTO sagas (id, kind, state, caller, idempotency_key, request_hash, currency, amount, fee,
                                debit_account_id, credit_account_id, payment_id, reference, deadline_at, metadata)
             VALUES ($1, $2, $15, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now() + $13::int8 * interval '1 millisecond', $14)
             ON CONFLICT ON CONSTRAINT sagas_idempotency_key_unique DO NOTHING RETURNING id",
            id,
            kind.as_str(),
            caller,
            idempotency_key,
            &hash,
            plan.currency.as_str(),
            plan.amount,
            plan.fee,
            plan.debit,
            plan.credit,
            plan.payment_id,
            plan.reference,
            i64::try_from(self.settings.deadline_ms).unwrap_or(i64::MAX),
            plan.metadata as _,
            SagaState::Started.as_str(),
        )
        .fetch_optional(&self.pool)
        .await?;
        match inserted {
            Some(id) => self.drive(id, false).await,
            // Another request with the same key won the race: answer as its replay.
            None => {
                self.replay_winner(caller, kind, idempotency_key, &hash)
                    .await
            }
        }
    }

    fn single_commit(&self) -> bool {
        self.settings.single_commit && self.settings.failpoint.is_none()
    }

    /// The answer to a request whose key another request took first.
    async fn replay_winner(
        &self,
        caller: &str,
        kind: SagaKind,
        idempotency_key: &str,
        hash: &str,
    ) -> Result<SagaView, SagaError> {
        let (id, stored_hash) = self
            .stored(caller, kind, idempotency_key)
            .await?
            .ok_or_else(|| {
                SagaError::Invalid(format!("the saga of key {idempotency_key} vanished"))
            })?;
        self.replay(id, &stored_hash, hash).await
    }

    /// The saga a caller's key names, with the hash of its request.
    async fn stored(
        &self,
        caller: &str,
        kind: SagaKind,
        idempotency_key: &str,
    ) -> Result<Option<(Uuid, String)>, SagaError> {
        let row = sqlx::query!(
            "SELECT id, request_hash FROM sagas WHERE caller = $1 AND kind = $2 AND idempotency_key = $3",
            caller,
            kind.as_str(),
            idempotency_key
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| (row.id, row.request_hash)))
    }

    /// A payment with nothing to wait for, in one transaction: the saga row written already
    /// `completed` (its idempotency key unique in the same transaction), the posted payment
    /// and its linked fee, the event, one commit. The transfers carry the ids and codes the
    /// step-by-step saga gives its capture and fee, so both paths leave the same balances and
    /// the same charges (the saga path also keeps its reservation and its release).
    ///
    /// `Ok(None)`: the key was taken by another request. A ledger refusal (funds, a closed
    /// account) is a `declined` saga, committed on its own. Any other error leaves nothing
    /// written, or the saga whole after a COMMIT whose answer was lost. Its event continues
    /// `traceparent`, the request's trace (a group writer runs it outside the request).
    async fn pay_at_once(
        &self,
        caller: &str,
        idempotency_key: &str,
        hash: &str,
        plan: &Plan,
        traceparent: &str,
    ) -> Result<Option<SagaView>, SagaError> {
        single_commit_failpoints().await?;
        let id = Uuid::new_v4();
        let batch = payment_transfers(id, plan)?;
        let mut tx = self.pool.begin().await?;
        let finished = Finished {
            id,
            caller,
            idempotency_key,
            hash,
            plan,
        };
        let Some(saga) = finished
            .insert(&mut tx, SagaState::Completed, None, plan.amount)
            .await?
        else {
            tx.rollback().await?;
            return Ok(None);
        };
        match ledger::apply_unguarded(&mut tx, &batch).await {
            Ok(_) => {}
            Err(error) if is_refusal(&error) => {
                tx.rollback().await?;
                let failure = Failure {
                    type_slug: failure_type(&error).into(),
                    detail: error.to_string(),
                };
                let mut tx = self.pool.begin().await?;
                let Some(saga) = finished
                    .insert(&mut tx, SagaState::Declined, Some(failure), 0)
                    .await?
                else {
                    tx.rollback().await?;
                    return Ok(None);
                };
                return self.announce(tx, saga, traceparent).await.map(Some);
            }
            Err(error) => return Err(error.into()),
        }
        self.announce(tx, saga, traceparent).await.map(Some)
    }

    /// Appends a finished saga's event (continuing the request's trace), commits, and counts it.
    async fn announce(
        &self,
        mut tx: Transaction<'_, Postgres>,
        saga: SagaView,
        traceparent: &str,
    ) -> Result<SagaView, SagaError> {
        let (topic, key, event) = finished_event(&saga);
        paykit::events::append_traced(&mut tx, topic, &key.to_string(), &event, traceparent)
            .await?;
        tx.commit().await?;
        paykit::events::wake_relays();
        counted(&saga);
        Ok(saga)
    }

    /// [`Sagas::pay_at_once`] through a group writer: the payment is written in one commit
    /// together with the others that are waiting (the group commit), or alone when none is.
    async fn pay_in_group(
        &self,
        caller: &str,
        idempotency_key: &str,
        hash: &str,
        plan: Plan,
    ) -> Result<Option<SagaView>, SagaError> {
        let queue = self.groups.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::channel(GROUP_QUEUE_MAX);
            let receiver = std::sync::Arc::new(tokio::sync::Mutex::new(receiver));
            for _ in 0..GROUP_WRITERS {
                let writer = self.clone();
                let receiver = receiver.clone();
                tokio::spawn(async move { writer.write_groups(receiver).await });
            }
            sender
        });
        let (answer, outcome) = tokio::sync::oneshot::channel();
        let job = GroupJob {
            traceparent: paykit::telemetry::current_traceparent()
                .unwrap_or_else(paykit::events::new_traceparent),
            caller: caller.to_string(),
            idempotency_key: idempotency_key.to_string(),
            hash: hash.to_string(),
            plan,
            answer,
        };
        if queue.send(job).await.is_err() {
            // Nothing was written: the payment goes step by step.
            return Err(SagaError::Database(sqlx::Error::WorkerCrashed));
        }
        outcome
            .await
            .unwrap_or(Err(SagaError::Database(sqlx::Error::WorkerCrashed)))
    }

    /// A group writer: takes the payments waiting (the first one it waits for, then whatever
    /// else is queued, up to `group_max`) and writes them. The receiver is shared: while one
    /// writer commits its group, the other collects the next.
    async fn write_groups(
        self,
        queue: std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<GroupJob>>>,
    ) {
        loop {
            let mut jobs = Vec::with_capacity(self.settings.group_max);
            {
                let mut queue = queue.lock().await;
                let Some(first) = queue.recv().await else {
                    return;
                };
                jobs.push(first);
                while jobs.len() < self.settings.group_max {
                    match queue.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
            }
            assert!(!jobs.is_empty() && jobs.len() <= self.settings.group_max);
            metrics::histogram!("saga_group_payments").record(jobs.len() as f64);
            self.write_group(jobs).await;
        }
    }

    /// Writes one group and answers each of its payments. A group that fails (a wallet that
    /// cannot afford its payment refuses the whole transaction) is split in halves and each
    /// half tried again as a group, down to one payment alone, so one refusal fails no other
    /// and costs about 2·log2(n) attempts instead of n single commits (a mix with a few declines
    /// keeps most of its payments grouped). Each payment is answered exactly once.
    async fn write_group(&self, jobs: Vec<GroupJob>) {
        // Halves still to write; at most log2(GROUP_MAX) + 1 of them wait at once.
        let mut pending = vec![jobs];
        while let Some(mut jobs) = pending.pop() {
            assert!(!jobs.is_empty() && jobs.len() <= self.settings.group_max);
            assert!(pending.len() <= GROUP_MAX.ilog2() as usize + 1);
            if jobs.len() == 1 {
                let job = jobs.pop().expect("one");
                let outcome = self
                    .pay_at_once(
                        &job.caller,
                        &job.idempotency_key,
                        &job.hash,
                        &job.plan,
                        &job.traceparent,
                    )
                    .await;
                let _ = job.answer.send(outcome);
                continue;
            }
            match self.pay_together(&jobs).await {
                Ok(outcomes) => {
                    for (job, outcome) in jobs.into_iter().zip(outcomes) {
                        let _ = job.answer.send(Ok(outcome));
                    }
                }
                // Nothing of the group was committed.
                Err(error) => {
                    tracing::info!(%error, payments = jobs.len(), "a group commit failed; its payments are written again in halves");
                    metrics::counter!("saga_group_splits_total").increment(1);
                    let second = jobs.split_off(jobs.len() / 2);
                    pending.push(second);
                    pending.push(jobs);
                }
            }
        }
    }

    /// Several payments in one transaction: each saga row already completed (a key already
    /// taken leaves its payment out, answered `None`), all their transfers as one ledger batch,
    /// their events, one commit. Any error or refusal leaves nothing written.
    async fn pay_together(&self, jobs: &[GroupJob]) -> Result<Vec<Option<SagaView>>, SagaError> {
        single_commit_failpoints().await?;
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut transfers = Vec::with_capacity(jobs.len() * 2);
        for job in jobs {
            let id = Uuid::new_v4();
            let finished = Finished {
                id,
                caller: &job.caller,
                idempotency_key: &job.idempotency_key,
                hash: &job.hash,
                plan: &job.plan,
            };
            let saga = finished
                .insert(&mut tx, SagaState::Completed, None, job.plan.amount)
                .await?;
            if saga.is_some() {
                transfers.extend(payment_transfers(id, &job.plan)?);
            }
            outcomes.push(saga);
        }
        if !transfers.is_empty() {
            ledger::apply_grouped(&mut tx, &transfers).await?;
        }
        for (job, saga) in jobs.iter().zip(&outcomes) {
            let Some(saga) = saga else { continue };
            let (topic, key, event) = finished_event(saga);
            paykit::events::append_traced(
                &mut tx,
                topic,
                &key.to_string(),
                &event,
                &job.traceparent,
            )
            .await?;
        }
        tx.commit().await?;
        paykit::events::wake_relays();
        outcomes.iter().flatten().for_each(counted);
        Ok(outcomes)
    }

    async fn replay(&self, id: Uuid, stored_hash: &str, hash: &str) -> Result<SagaView, SagaError> {
        if stored_hash != hash {
            return Err(SagaError::IdempotencyKeyReused);
        }
        let mut view = self.drive(id, false).await?;
        view.replayed = true;
        Ok(view)
    }

    /// Validates a request against the ledger and works out its accounts and fee. Nothing is
    /// written: a request refused here leaves no trace.
    async fn plan(&self, request: &Request) -> Result<Plan, SagaError> {
        // Platform accounts first, on their own connections: holding one connection while
        // asking the pool for another deadlocks a busy pool.
        let currency = match request {
            Request::TopUp { amount, .. }
            | Request::Payment { amount, .. }
            | Request::P2p { amount, .. }
            | Request::Refund { amount, .. } => amount.currency,
        };
        let system = match request {
            Request::TopUp { .. } => {
                Some(self.system_account(AccountKind::Funding, currency).await?)
            }
            Request::Payment { .. } => {
                Some(self.system_account(AccountKind::Fees, currency).await?)
            }
            _ => {
                self.settled(currency).await?;
                None
            }
        };
        let mut connection = self.pool.acquire().await?;
        let expect = |account: Option<ledger::Account>,
                      id: Uuid,
                      kind: AccountKind,
                      currency: Currency|
         -> Result<(), SagaError> {
            let account = account.ok_or(LedgerError::AccountNotFound(id))?;
            if account.kind != kind {
                return Err(SagaError::WrongAccountKind {
                    account: id,
                    actual: account.kind.as_str(),
                    expected: kind.as_str(),
                });
            }
            if account.currency != currency.as_str() {
                return Err(LedgerError::CurrencyMismatch {
                    account: id,
                    account_currency: account.currency,
                    transfer: currency.to_string(),
                }
                .into());
            }
            if account.closed {
                return Err(LedgerError::AccountClosed(id).into());
            }
            Ok(())
        };
        match request {
            Request::TopUp {
                wallet_account_id,
                amount,
            } => {
                let amount = positive(*amount)?;
                expect(
                    ledger::account(&mut connection, *wallet_account_id).await?,
                    *wallet_account_id,
                    AccountKind::Wallet,
                    amount.currency,
                )?;
                let funding = system.ok_or(LedgerError::UnknownCurrency(currency.to_string()))?;
                Ok(Plan::new(amount, funding, *wallet_account_id))
            }
            Request::Payment {
                wallet_account_id,
                merchant_account_id,
                amount,
                fee_bps,
                reference,
                metadata,
            } => {
                let amount = positive(*amount)?;
                if metadata
                    .as_ref()
                    .is_some_and(|m| !m.is_object() || m.to_string().len() > METADATA_MAX_BYTES)
                {
                    return Err(SagaError::Invalid(format!(
                        "metadata must be an object of at most {METADATA_MAX_BYTES} bytes"
                    )));
                }
                if *fee_bps > FEE_BPS_MAX {
                    return Err(SagaError::Invalid(format!(
                        "fee_bps must be at most {FEE_BPS_MAX}"
                    )));
                }
                if reference.as_ref().is_some_and(|r| r.chars().count() > 140) {
                    return Err(SagaError::Invalid(
                        "the reference is longer than 140 characters".into(),
                    ));
                }
                let (wallet, merchant) =
                    ledger::account_pair(&mut connection, *wallet_account_id, *merchant_account_id)
                        .await?;
                expect(
                    wallet,
                    *wallet_account_id,
                    AccountKind::Wallet,
                    amount.currency,
                )?;
                expect(
                    merchant,
                    *merchant_account_id,
                    AccountKind::Merchant,
                    amount.currency,
                )?;
                let mut plan = Plan::new(amount, *wallet_account_id, *merchant_account_id);
                plan.fee = fee_for(amount.value, *fee_bps);
                plan.reference = reference.clone();
                plan.metadata = metadata.clone();
                plan.fees_account = system;
                Ok(plan)
            }
            Request::P2p {
                from_account_id,
                to_account_id,
                amount,
            } => {
                let amount = positive(*amount)?;
                if from_account_id == to_account_id {
                    return Err(LedgerError::SameAccount.into());
                }
                let (from, to) =
                    ledger::account_pair(&mut connection, *from_account_id, *to_account_id).await?;
                expect(from, *from_account_id, AccountKind::Wallet, amount.currency)?;
                expect(to, *to_account_id, AccountKind::Wallet, amount.currency)?;
                Ok(Plan::new(amount, *from_account_id, *to_account_id))
            }
            Request::Refund { payment_id, amount } => {
                let amount = positive(*amount)?;
                let row = sqlx::query!(
                    r#"SELECT state AS "state: SagaState", currency::text AS "currency!", captured_amount, refunded_amount,
                              debit_account_id, credit_account_id
                     FROM sagas WHERE id = $1 AND kind = $2"#,
                    payment_id,
                    SagaKind::Payment.as_str()
                )
                .fetch_optional(&mut *connection)
                .await?
                .ok_or(SagaError::PaymentNotFound(*payment_id))?;
                if row.currency != amount.currency.as_str() {
                    return Err(SagaError::Ledger(LedgerError::CurrencyMismatch {
                        account: row.credit_account_id,
                        account_currency: row.currency,
                        transfer: amount.currency.to_string(),
                    }));
                }
                if row.state != SagaState::Completed {
                    return Err(SagaError::PaymentNotCompleted(*payment_id));
                }
                let refundable = row.captured_amount - row.refunded_amount;
                if amount.value > refundable {
                    return Err(SagaError::RefundExceedsCapture {
                        payment: *payment_id,
                        requested: amount.value,
                        refundable,
                    });
                }
                // Money goes back from the merchant to the wallet that paid.
                let mut plan = Plan::new(amount, row.credit_account_id, row.debit_account_id);
                plan.payment_id = Some(*payment_id);
                Ok(plan)
            }
        }
    }

    async fn settled(&self, currency: Currency) -> Result<(), SagaError> {
        let mut connection = self.pool.acquire().await?;
        if ledger::currency_exists(&mut connection, currency).await? {
            Ok(())
        } else {
            Err(LedgerError::UnknownCurrency(currency.to_string()).into())
        }
    }

    /// The platform's account of a kind in a currency (its currency checked), made on first
    /// use and then known to this process: it is never closed nor removed, so every later
    /// payment or top-up plans without asking the database for it.
    async fn system_account(
        &self,
        kind: AccountKind,
        currency: Currency,
    ) -> Result<Uuid, SagaError> {
        let key = (kind.as_str(), currency);
        if let Some(id) = self
            .system
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(*id);
        }
        self.settled(currency).await?;
        let id = ledger::system_account(&self.pool, kind, currency).await?.id;
        let mut known = self.system.lock().unwrap_or_else(|e| e.into_inner());
        // One per kind and currency: a handful, never more than the ledger's currencies allow.
        assert!(
            known.len() < SYSTEM_ACCOUNTS_MAX,
            "system accounts: {}",
            known.len()
        );
        known.insert(key, id);
        Ok(id)
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<SagaView>, sqlx::Error> {
        let row = sqlx::query_as!(
            SagaRow,
            r#"SELECT id, kind AS "kind: SagaKind", state AS "state: SagaState", currency::text AS "currency!", amount, fee,
                      debit_account_id, credit_account_id, payment_id, captured_amount, refunded_amount, reference,
                      metadata AS "metadata: serde_json::Value", failure_type, failure_detail, created_at, updated_at
             FROM sagas WHERE id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(SagaView::try_from).transpose()
    }

    /// Moves a saga forward until it ends or a step must wait. `skip_locked`: the recovery
    /// worker leaves alone a saga that a request is driving right now.
    ///
    /// Runs in a `saga.drive` span whose `saga.id` attribute is how `paytool trace ID` finds
    /// a payment's trace in Jaeger.
    pub async fn drive(&self, id: Uuid, skip_locked: bool) -> Result<SagaView, SagaError> {
        let span = tracing::info_span!(
            "saga.drive",
            "saga.id" = %id,
            "saga.kind" = tracing::field::Empty,
            "saga.state" = tracing::field::Empty,
        );
        let outcome = self
            .drive_steps(id, skip_locked)
            .instrument(span.clone())
            .await;
        if let Ok(saga) = &outcome {
            span.record("saga.kind", saga.kind.as_str());
            span.record("saga.state", saga.state.as_str());
        }
        outcome
    }

    async fn drive_steps(&self, id: Uuid, skip_locked: bool) -> Result<SagaView, SagaError> {
        for _ in 0..STEPS_MAX {
            let mut tx = self.pool.begin().await?;
            // The same query with either lock: two literals, so that both are checked.
            let locked = if skip_locked {
                sqlx::query_as!(
                    LockedSagaRow,
                    r#"SELECT id, kind AS "kind: SagaKind", state AS "state: SagaState", currency::text AS "currency!", amount, fee,
                              debit_account_id, credit_account_id, payment_id, captured_amount, refunded_amount, reference,
                              metadata AS "metadata: serde_json::Value", failure_type, failure_detail, created_at, updated_at,
                              deadline_at < now() AS "overdue!"
                     FROM sagas WHERE id = $1 FOR UPDATE SKIP LOCKED"#,
                    id
                )
                .fetch_optional(&mut *tx)
                .await?
            } else {
                sqlx::query_as!(
                    LockedSagaRow,
                    r#"SELECT id, kind AS "kind: SagaKind", state AS "state: SagaState", currency::text AS "currency!", amount, fee,
                              debit_account_id, credit_account_id, payment_id, captured_amount, refunded_amount, reference,
                              metadata AS "metadata: serde_json::Value", failure_type, failure_detail, created_at, updated_at,
                              deadline_at < now() AS "overdue!"
                     FROM sagas WHERE id = $1 FOR UPDATE"#,
                    id
                )
                .fetch_optional(&mut *tx)
                .await?
            };
            let Some(locked) = locked else {
                tx.rollback().await?;
                return self
                    .get(id)
                    .await?
                    .ok_or_else(|| SagaError::Invalid(format!("saga {id} vanished")));
            };
            let (row, overdue) = locked.split();
            let saga = SagaView::try_from(row)?;
            if saga.is_terminal() {
                tx.commit().await?;
                return Ok(saga);
            }
            paykit::failpoints::delay("orchestrator.saga.step-delay").await;
            let stepped = if paykit::failpoints::fails("orchestrator.saga.before-step") {
                Err(LedgerError::Database(sqlx::Error::Protocol(
                    "failpoint orchestrator.saga.before-step".into(),
                )))
            } else {
                self.step(&mut tx, &saga, overdue).await
            };
            match stepped {
                Ok(transition) => {
                    sqlx::query!(
                        "UPDATE sagas SET state = $2, failure_type = coalesce($3, failure_type), failure_detail = coalesce($4, failure_detail),
                                captured_amount = coalesce($5, captured_amount), attempts = 0, next_attempt_at = now(), updated_at = now()
                         WHERE id = $1",
                        id,
                        transition.state.as_str(),
                        transition.failure.as_ref().map(|f| f.type_slug.clone()),
                        transition.failure.as_ref().map(|f| f.detail.clone()),
                        transition.captured_amount,
                    )
                    .execute(&mut *tx)
                    .await?;
                    if transition.state.is_terminal() {
                        // The event commits with the state, or neither does.
                        let row = sqlx::query_as!(
                            SagaRow,
                            r#"SELECT id, kind AS "kind: SagaKind", state AS "state: SagaState", currency::text AS "currency!", amount, fee,
                                      debit_account_id, credit_account_id, payment_id, captured_amount, refunded_amount, reference,
                                      metadata AS "metadata: serde_json::Value", failure_type, failure_detail, created_at, updated_at
                             FROM sagas WHERE id = $1"#,
                            id
                        )
                        .fetch_one(&mut *tx)
                        .await?;
                        let finished = SagaView::try_from(row)?;
                        let (topic, key, event) = finished_event(&finished);
                        paykit::events::append(&mut tx, topic, &key.to_string(), &event).await?;
                        tx.commit().await?;
                        paykit::events::wake_relays();
                        record_finished(&finished);
                    } else {
                        tx.commit().await?;
                    }
                    metrics::counter!(
                        "saga_transitions_total",
                        "kind" => saga.kind.as_str(),
                        "state" => transition.state.as_str(),
                    )
                    .increment(1);
                    self.failpoint(transition.state);
                }
                Err(error) => {
                    // A step that failed for a reason other than the business outcomes above
                    // (the database, a lost connection) is tried again later, within the deadline.
                    tx.rollback().await?;
                    tracing::warn!(saga = %id, state = %saga.state, error = %error, "saga step failed; will retry");
                    // `$2::int8`: the i64 it was always sent, not the float8 PostgreSQL would infer.
                    sqlx::query!(
                        "UPDATE sagas SET attempts = attempts + 1,
                                next_attempt_at = now() + least(power(2, attempts), 64) * $2::int8 * interval '1 millisecond', updated_at = now()
                         WHERE id = $1",
                        id,
                        i64::try_from(self.settings.retry_backoff_ms).unwrap_or(500),
                    )
                    .execute(&self.pool)
                    .await?;
                    return Ok(self.get(id).await?.unwrap_or(saga));
                }
            }
        }
        self.get(id)
            .await?
            .ok_or_else(|| SagaError::Invalid(format!("saga {id} vanished")))
    }

    fn failpoint(&self, state: SagaState) {
        if self
            .settings
            .failpoint
            .as_deref()
            .and_then(|f| f.strip_prefix("after:"))
            == Some(state.as_str())
        {
            eprintln!("failpoint after:{state} reached: aborting the process");
            std::process::abort();
        }
    }

    async fn step(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        saga: &SagaView,
        overdue: bool,
    ) -> Result<Transition, LedgerError> {
        let currency = saga.amount.currency;
        let transfer = |step: &str,
                        debit: Uuid,
                        credit: Uuid,
                        amount: i64,
                        kind: TransferKind,
                        code: &'static str| NewTransfer {
            id: step_id(saga.id, step),
            debit,
            credit,
            amount,
            currency,
            kind,
            code,
            saga_id: Some(saga.id),
        };
        let reserve_id = step_id(saga.id, "reserve");
        use SagaKind::{P2p, Payment, Refund, TopUp};
        use SagaState::{Captured, Compensating, MerchantConfirmed, Reserved, Started};
        match (saga.kind, saga.state) {
            (Payment, Started) if overdue => Ok(Transition::failed(
                SagaState::Declined,
                "deadline-exceeded",
                "the payment was not started before its deadline",
            )),
            (Payment, Reserved | MerchantConfirmed) if overdue => Ok(Transition::failed(
                SagaState::Compensating,
                "deadline-exceeded",
                "the payment did not complete before its deadline",
            )),
            (Payment, Started) => {
                let reserve = transfer(
                    "reserve",
                    saga.debit_account_id,
                    saga.credit_account_id,
                    saga.amount.value,
                    TransferKind::Pending {
                        timeout_ms: Some(self.settings.reserve_timeout_ms),
                    },
                    "payment_reserve",
                );
                settle(ledger::apply_in(tx, &[reserve]).await, SagaState::Reserved)
            }
            (Payment, Reserved) => {
                // Confirm the merchant side: the merchant's account must still take payments.
                let merchant = ledger::account(tx, saga.credit_account_id).await?;
                match merchant {
                    Some(account) if !account.closed => {
                        Ok(Transition::to(SagaState::MerchantConfirmed))
                    }
                    _ => Ok(Transition::failed(
                        SagaState::Compensating,
                        "merchant-unavailable",
                        "the merchant's account no longer accepts payments",
                    )),
                }
            }
            (Payment, MerchantConfirmed) => {
                let mut batch = vec![transfer(
                    "capture",
                    saga.debit_account_id,
                    saga.credit_account_id,
                    saga.amount.value,
                    TransferKind::PostPending {
                        pending_id: reserve_id,
                        amount: None,
                    },
                    "payment",
                )];
                if saga.fee.value > 0 {
                    // Made when the payment was planned; looked up on this transaction's own connection.
                    let fees = ledger::system_account_id(tx, AccountKind::Fees, currency)
                        .await?
                        .ok_or_else(|| LedgerError::UnknownCurrency(currency.to_string()))?;
                    batch.push(transfer(
                        "fee",
                        saga.credit_account_id,
                        fees,
                        saga.fee.value,
                        TransferKind::Posted,
                        "fee",
                    ));
                }
                match ledger::apply_in(tx, &batch).await {
                    Ok(_) => Ok(Transition {
                        captured_amount: Some(saga.amount.value),
                        ..Transition::to(SagaState::Captured)
                    }),
                    Err(error @ LedgerError::PendingExpired(_)) => Ok(Transition::failed(
                        SagaState::Compensating,
                        "reservation-expired",
                        error.to_string(),
                    )),
                    Err(error @ LedgerError::PendingAlreadyResolved(..)) => Ok(Transition::failed(
                        SagaState::Voided,
                        "reservation-expired",
                        error.to_string(),
                    )),
                    Err(error) => Err(error),
                }
            }
            // The outbox event that tells the merchant is written here once events exist.
            (Payment, Captured) => Ok(Transition::to(SagaState::Completed)),
            (Payment, Compensating) => {
                let void = transfer(
                    "void",
                    saga.debit_account_id,
                    saga.credit_account_id,
                    saga.amount.value,
                    TransferKind::VoidPending {
                        pending_id: reserve_id,
                    },
                    "payment_void",
                );
                match ledger::apply_in(tx, &[void]).await {
                    Ok(_)
                    | Err(LedgerError::PendingAlreadyResolved(..))
                    | Err(LedgerError::PendingNotFound(_)) => Ok(Transition::to(SagaState::Voided)),
                    Err(error) => Err(error),
                }
            }
            // A top-up (funding → wallet) and a send (wallet → wallet) are one posted transfer.
            (kind @ (TopUp | P2p), Started) => {
                let code = if kind == TopUp { "top_up" } else { "p2p" };
                let posted = transfer(
                    code,
                    saga.debit_account_id,
                    saga.credit_account_id,
                    saga.amount.value,
                    TransferKind::Posted,
                    code,
                );
                settle(ledger::apply_in(tx, &[posted]).await, SagaState::Completed)
            }
            (Refund, Started) => {
                let payment_id = saga.payment_id.unwrap_or_default();
                // The payment row is the refunds' lock: concurrent refunds of one payment queue here.
                let row = sqlx::query!(
                    "SELECT captured_amount, refunded_amount FROM sagas WHERE id = $1 FOR UPDATE",
                    payment_id
                )
                .fetch_one(&mut **tx)
                .await?;
                let refundable = row.captured_amount - row.refunded_amount;
                if saga.amount.value > refundable {
                    return Ok(Transition::failed(
                        SagaState::Declined,
                        "refund-exceeds-capture",
                        format!(
                            "refunding {} would exceed what is left to refund ({refundable})",
                            saga.amount.value
                        ),
                    ));
                }
                let refund = transfer(
                    "refund",
                    saga.debit_account_id,
                    saga.credit_account_id,
                    saga.amount.value,
                    TransferKind::Posted,
                    "refund",
                );
                let applied = ledger::apply_in(tx, &[refund]).await?;
                if matches!(applied.first(), Some(Applied::Created(_))) {
                    sqlx::query!(
                        "UPDATE sagas SET refunded_amount = refunded_amount + $2, updated_at = now() WHERE id = $1",
                        payment_id,
                        saga.amount.value
                    )
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(Transition::to(SagaState::Completed))
            }
            (_, _) if overdue => Ok(Transition::failed(
                SagaState::Failed,
                "deadline-exceeded",
                "the saga did not complete before its deadline",
            )),
            (kind, state) => {
                tracing::error!(%kind, %state, "a saga in a state no step handles");
                Ok(Transition::failed(
                    SagaState::Failed,
                    "internal",
                    "the saga reached a state it cannot leave",
                ))
            }
        }
    }

    /// One round of the recovery worker: expire reservations, drive due sagas. Returns how many
    /// sagas it moved.
    pub async fn recover_once(&self) -> Result<usize, SagaError> {
        ledger::expire_pending(&self.pool, RECOVERY_BATCH).await?;
        // The unfinished sagas, spelled as the partial index `sagas_unfinished` spells them (a
        // literal, so that the planner can use the index); a test holds it to
        // [`SagaState::TERMINAL`].
        let due: Vec<Uuid> = sqlx::query_scalar!(
            "SELECT id FROM sagas WHERE state NOT IN ('completed', 'declined', 'voided', 'failed') AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1",
            RECOVERY_BATCH
        )
        .fetch_all(&self.pool)
        .await?;
        let mut moved = 0;
        for id in due {
            let before = self.get(id).await?.map(|s| s.state);
            let after = self.drive(id, true).await?;
            if before != Some(after.state) {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Runs the recovery worker until the process ends.
    pub async fn run_recovery(self) {
        loop {
            if let Err(error) = self.recover_once().await {
                tracing::warn!(%error, "recovery round failed");
            }
            tokio::time::sleep(Duration::from_millis(RECOVERY_INTERVAL_MS)).await;
        }
    }
}

/// A step's transfers applied: on to `next`; refused for a business reason (funds, a closed or
/// missing account, a currency): declined, with the reason kept for replays.
fn settle(
    result: Result<Vec<Applied>, LedgerError>,
    next: SagaState,
) -> Result<Transition, LedgerError> {
    match result {
        Ok(_) => Ok(Transition::to(next)),
        Err(error) if is_refusal(&error) => Ok(Transition::failed(
            SagaState::Declined,
            failure_type(&error),
            error.to_string(),
        )),
        Err(error) => Err(error),
    }
}

/// A ledger error that declines a payment (its answer for good), not one to try again.
fn is_refusal(error: &LedgerError) -> bool {
    matches!(
        error,
        LedgerError::InsufficientFunds { .. }
            | LedgerError::AccountClosed(_)
            | LedgerError::AccountNotFound(_)
            | LedgerError::CurrencyMismatch { .. }
    )
}

/// A payment's saga row as the single commit writes it: already in its terminal state.
struct Finished<'a> {
    id: Uuid,
    caller: &'a str,
    idempotency_key: &'a str,
    hash: &'a str,
    plan: &'a Plan,
}

impl Finished<'_> {
    /// Inserts the row unless its key is taken (then `None`), and answers it as read back.
    async fn insert(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        state: SagaState,
        failure: Option<Failure>,
        captured: i64,
    ) -> Result<Option<SagaView>, SagaError> {
        let plan = self.plan;
        let (failure_type, failure_detail) = failure
            .map(|f| (Some(f.type_slug), Some(f.detail)))
            .unwrap_or_default();
        let row = sqlx::query_as!(
            SagaRow,
            r#"INSERT INTO sagas (id, kind, state, caller, idempotency_key, request_hash, currency, amount, fee,
                                debit_account_id, credit_account_id, reference, deadline_at, metadata,
                                captured_amount, failure_type, failure_detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now(), $13, $14, $15, $16)
             ON CONFLICT ON CONSTRAINT sagas_idempotency_key_unique DO NOTHING
             RETURNING id, kind AS "kind: SagaKind", state AS "state: SagaState", currency::text AS "currency!", amount, fee,
                       debit_account_id, credit_account_id, payment_id, captured_amount, refunded_amount, reference,
                       metadata AS "metadata: serde_json::Value", failure_type, failure_detail, created_at, updated_at"#,
            self.id,
            SagaKind::Payment.as_str(),
            state.as_str(),
            self.caller,
            self.idempotency_key,
            self.hash,
            plan.currency.as_str(),
            plan.amount,
            plan.fee,
            plan.debit,
            plan.credit,
            plan.reference,
            plan.metadata.clone() as _,
            captured,
            failure_type,
            failure_detail,
        )
        .fetch_optional(&mut **tx)
        .await?;
        Ok(row.map(SagaView::try_from).transpose()?)
    }
}

fn positive(amount: Money) -> Result<Money, SagaError> {
    amount
        .positive()
        .map_err(|e| SagaError::Invalid(e.to_string()))
}

#[derive(Clone)]
struct Plan {
    currency: Currency,
    amount: i64,
    fee: i64,
    debit: Uuid,
    credit: Uuid,
    payment_id: Option<Uuid>,
    reference: Option<String>,
    metadata: Option<serde_json::Value>,
    /// A payment's fee account (made when it was planned).
    fees_account: Option<Uuid>,
}

impl Plan {
    fn new(amount: Money, debit: Uuid, credit: Uuid) -> Self {
        Self {
            currency: amount.currency,
            amount: amount.value,
            fee: 0,
            debit,
            credit,
            payment_id: None,
            reference: None,
            metadata: None,
            fees_account: None,
        }
    }
}

/// Where finished payments and refunds are announced.
pub const PAYMENTS_TOPIC: &str = "payments.v1";
/// Where finished top-ups and transfers are announced.
pub const LEDGER_TOPIC: &str = "ledger.v1";

/// The topic, partition key and envelope announcing that a saga finished. Payments and refunds
/// go to `payments.v1` keyed by the merchant's account (one merchant's events stay in order);
/// top-ups and transfers go to `ledger.v1` keyed by the account they debit.
pub fn finished_event(saga: &SagaView) -> (&'static str, Uuid, paykit::events::Envelope) {
    let (topic, key, entity) = match saga.kind {
        SagaKind::Payment => (PAYMENTS_TOPIC, saga.credit_account_id, "payment"),
        SagaKind::Refund => (PAYMENTS_TOPIC, saga.debit_account_id, "refund"),
        SagaKind::TopUp => (LEDGER_TOPIC, saga.credit_account_id, "top_up"),
        SagaKind::P2p => (LEDGER_TOPIC, saga.debit_account_id, "transfer"),
    };
    let event = paykit::events::Envelope::new(
        &format!("{entity}.{}", saga.state),
        format!("{entity}/{}", saga.id),
        serde_json::to_value(saga).unwrap_or_default(),
    );
    (topic, key, event)
}

/// The rows a [`SagaView`] is made from: [`SagaRow`] as `get` selects it, [`LockedSagaRow`] with
/// whether its deadline passed, as `drive` locks it. One list of columns for both.
macro_rules! saga_rows {
    ($($field:ident: $ty:ty,)+) => {
        struct SagaRow {
            $($field: $ty,)+
        }

        struct LockedSagaRow {
            $($field: $ty,)+
            overdue: bool,
        }

        impl LockedSagaRow {
            fn split(self) -> (SagaRow, bool) {
                (SagaRow { $($field: self.$field,)+ }, self.overdue)
            }
        }
    };
}

saga_rows! {
    id: Uuid,
    kind: SagaKind,
    state: SagaState,
    currency: String,
    amount: i64,
    fee: i64,
    debit_account_id: Uuid,
    credit_account_id: Uuid,
    payment_id: Option<Uuid>,
    captured_amount: i64,
    refunded_amount: i64,
    reference: Option<String>,
    metadata: Option<serde_json::Value>,
    failure_type: Option<String>,
    failure_detail: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl TryFrom<SagaRow> for SagaView {
    type Error = sqlx::Error;

    fn try_from(row: SagaRow) -> Result<Self, Self::Error> {
        let currency =
            Currency::parse(&row.currency).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(SagaView {
            id: row.id,
            kind: row.kind,
            state: row.state,
            amount: Money::new(row.amount, currency),
            fee: Money::new(row.fee, currency),
            debit_account_id: row.debit_account_id,
            credit_account_id: row.credit_account_id,
            payment_id: row.payment_id,
            captured_amount: row.captured_amount,
            refunded_amount: row.refunded_amount,
            reference: row.reference,
            metadata: row.metadata,
            failure: row.failure_type.map(|type_slug| Failure {
                type_slug,
                detail: row.failure_detail.unwrap_or_default(),
            }),
            created_at: row.created_at,
            updated_at: row.updated_at,
            wallet_balance: None,
            replayed: false,
        })
    }
}

/// The business metrics of a saga that ended, counted once, after its commit: how many of each
/// kind ended in each state, and how much money (minor units, by currency) they moved.
/// The saga failpoints a single commit (alone or a group's) passes, as a step does: the delay,
/// then the error a database would give before any work.
async fn single_commit_failpoints() -> Result<(), SagaError> {
    paykit::failpoints::delay("orchestrator.saga.step-delay").await;
    if paykit::failpoints::fails("orchestrator.saga.before-step") {
        return Err(LedgerError::Database(sqlx::Error::Protocol(
            "failpoint orchestrator.saga.before-step".into(),
        ))
        .into());
    }
    Ok(())
}

/// A payment's transfers in one commit: its capture, and its fee when it has one.
fn payment_transfers(id: Uuid, plan: &Plan) -> Result<Vec<NewTransfer>, SagaError> {
    let fees = plan
        .fees_account
        .ok_or_else(|| LedgerError::UnknownCurrency(plan.currency.to_string()))?;
    let mut batch = vec![NewTransfer {
        id: step_id(id, "capture"),
        debit: plan.debit,
        credit: plan.credit,
        amount: plan.amount,
        currency: plan.currency,
        kind: TransferKind::Posted,
        code: "payment",
        saga_id: Some(id),
    }];
    if plan.fee > 0 {
        batch.push(NewTransfer {
            id: step_id(id, "fee"),
            debit: plan.credit,
            credit: fees,
            amount: plan.fee,
            currency: plan.currency,
            kind: TransferKind::Posted,
            code: "fee",
            saga_id: Some(id),
        });
    }
    Ok(batch)
}

/// Puts every outcome's counters at 0 before the first saga: a counter that appears at its
/// first increment has no earlier sample, so Prometheus' `increase` and `rate` cannot see that
/// first step, and a fresh platform's first payment would be missing from every dashboard.
/// The label values known in advance: each kind, each terminal state, and each currency a
/// merchant can take (the EMVCo table merchant-api checks against); 4 × 4 × 18 series each.
pub fn zero_metrics() {
    // Before the first use, so that these land in the recorder /metrics serves.
    paykit::metrics::install();
    for kind in SagaKind::ALL {
        for state in SagaState::ALL {
            metrics::counter!(
                "saga_transitions_total",
                "kind" => kind.as_str(),
                "state" => state.as_str(),
            )
            .increment(0);
        }
        for state in SagaState::TERMINAL {
            for currency in emvco::CURRENCIES {
                for name in ["sagas_finished_total", "saga_amount_minor_total"] {
                    metrics::counter!(
                        name,
                        "kind" => kind.as_str(),
                        "state" => state.as_str(),
                        "currency" => currency.alpha,
                    )
                    .increment(0);
                }
            }
        }
    }
    metrics::counter!("saga_group_splits_total").increment(0);
}

/// The metrics of a saga that finished in a commit just made.
fn counted(saga: &SagaView) {
    record_finished(saga);
    metrics::counter!(
        "saga_transitions_total",
        "kind" => saga.kind.as_str(),
        "state" => saga.state.as_str(),
    )
    .increment(1);
}

fn record_finished(saga: &SagaView) {
    let currency = saga.amount.currency.to_string();
    metrics::counter!(
        "sagas_finished_total",
        "kind" => saga.kind.as_str(),
        "state" => saga.state.as_str(),
        "currency" => currency.clone(),
    )
    .increment(1);
    metrics::counter!(
        "saga_amount_minor_total",
        "kind" => saga.kind.as_str(),
        "state" => saga.state.as_str(),
        "currency" => currency,
    )
    .increment(u64::try_from(saga.amount.value).unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recovery_query_skips_exactly_the_terminal_states() {
        let listed: Vec<String> = SagaState::TERMINAL
            .iter()
            .map(|state| format!("'{state}'"))
            .collect();
        // The query is a literal in `recover_once`, for the macro that checks it against the
        // schema; its text is held to the terminal states here.
        let unfinished = format!("state NOT IN ({})", listed.join(", "));
        let recovery =
            format!("\"SELECT id FROM sagas WHERE {unfinished} AND next_attempt_at <= now()");
        assert!(
            include_str!("saga.rs").contains(&recovery),
            "recover_once must select {unfinished}"
        );
    }
}
