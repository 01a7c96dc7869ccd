//! The double-entry ledger on PostgreSQL.
//!
//! Accounts hold four balances (debits/credits × pending/posted). Transfers are immutable and
//! identified by the caller's id: applying the same transfer again is answered with
//! [`Applied::Exists`], applying a different transfer under an existing id is an error. A batch
//! is applied in one savepoint: all of it or none of it (TigerBeetle's linked transfers).
//!
//! Hot accounts: an account's balance is spread over `balance_buckets` rows; a transfer updates
//! the row its id hashes to. Merchants, the funding and the fee accounts have many buckets so
//! that concurrent payments to one merchant do not queue on one row lock; wallets have one,
//! which lets a single row enforce "debits must not exceed credits".

use paykit::money::{Currency, MAX_AMOUNT_MINOR};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Buckets for accounts that receive from many payers at once.
pub const HOT_ACCOUNT_BUCKETS: i16 = 16;
/// Largest page of account history.
pub const HISTORY_PAGE_MAX: i64 = 100;
/// Largest batch of linked transfers.
pub const BATCH_MAX: usize = 8;

/// The account types are part of the orchestrator's contract; their limits and hot-account
/// spreading are the ledger's own.
pub use paykit::contract::{Account, AccountKind};

/// Only a wallet is limited: it can never spend more than it holds. The funding account is
/// the other side of money entering the platform, so its debits exceed its credits.
fn debits_must_not_exceed_credits(kind: AccountKind) -> bool {
    kind == AccountKind::Wallet
}

fn buckets(kind: AccountKind) -> i16 {
    match kind {
        AccountKind::Wallet | AccountKind::Suspense => 1,
        AccountKind::Merchant | AccountKind::Funding | AccountKind::Fees => HOT_ACCOUNT_BUCKETS,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub debits_pending: i64,
    pub debits_posted: i64,
    pub credits_pending: i64,
    pub credits_posted: i64,
}

impl Balance {
    /// The balance as the orchestrator's API shows it.
    pub fn wire(&self) -> paykit::contract::Balance {
        paykit::contract::Balance {
            available: self.available(),
            posted: self.posted(),
            pending_debits: self.debits_pending,
            pending_credits: self.credits_pending,
            debits_posted: self.debits_posted,
            credits_posted: self.credits_posted,
        }
    }

    /// What a limited account may still spend: credits less posted and reserved debits.
    pub fn available(&self) -> i64 {
        self.credits_posted - self.debits_posted - self.debits_pending
    }
    /// Net posted balance from the account holder's side (credits less debits).
    pub fn posted(&self) -> i64 {
        self.credits_posted - self.debits_posted
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferKind {
    Posted,
    /// A reservation, voided by the expiry worker after `timeout_ms` unless posted first.
    Pending {
        timeout_ms: Option<u64>,
    },
    /// Posts a pending transfer: `amount` (at most the pending amount; `None` for all of it).
    PostPending {
        pending_id: Uuid,
        amount: Option<i64>,
    },
    VoidPending {
        pending_id: Uuid,
    },
}

impl TransferKind {
    fn as_str(&self) -> &'static str {
        match self {
            TransferKind::Posted => "posted",
            TransferKind::Pending { .. } => "pending",
            TransferKind::PostPending { .. } => "post_pending",
            TransferKind::VoidPending { .. } => "void_pending",
        }
    }
}

/// A transfer to apply. For post/void, `debit`, `credit` and `currency` are the pending
/// transfer's and `amount` is ignored unless it is a partial post.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub id: Uuid,
    pub debit: Uuid,
    pub credit: Uuid,
    pub amount: i64,
    pub currency: Currency,
    pub kind: TransferKind,
    pub code: &'static str,
    pub saga_id: Option<Uuid>,
}

/// A transfer as the ledger keeps it: what the API shows ([`paykit::contract::Transfer`],
/// whose fields it derefs to) and its place in the ledger's order, which stays inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transfer {
    #[serde(flatten)]
    pub record: paykit::contract::Transfer,
    #[serde(skip)]
    pub seq: i64,
}

impl std::ops::Deref for Transfer {
    type Target = paykit::contract::Transfer;

    fn deref(&self) -> &Self::Target {
        &self.record
    }
}

impl Transfer {
    /// The transfer as the orchestrator's API shows it in an account's history.
    pub fn wire(&self) -> paykit::contract::Transfer {
        self.record.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created(Transfer),
    /// The same transfer was applied before; nothing changed.
    Exists(Transfer),
}

impl Applied {
    pub fn transfer(&self) -> &Transfer {
        match self {
            Applied::Created(t) | Applied::Exists(t) => t,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("account {0} does not exist")]
    AccountNotFound(Uuid),
    #[error("account {0} is closed")]
    AccountClosed(Uuid),
    #[error("the transfer is in {transfer} but account {account} keeps {account_currency}")]
    CurrencyMismatch {
        account: Uuid,
        account_currency: String,
        transfer: String,
    },
    #[error("{0} is not a currency this ledger settles in")]
    UnknownCurrency(String),
    #[error("a transfer needs two different accounts")]
    SameAccount,
    #[error("the amount must be between 1 and {MAX_AMOUNT_MINOR} minor units, got {0}")]
    BadAmount(i64),
    #[error("account {account} has {available} available, the transfer needs {needed}")]
    InsufficientFunds {
        account: Uuid,
        available: i64,
        needed: i64,
    },
    #[error("transfer {0} exists with different content")]
    ExistsWithDifferentContent(Uuid),
    #[error("pending transfer {0} does not exist")]
    PendingNotFound(Uuid),
    #[error("pending transfer {0} was already {1}")]
    PendingAlreadyResolved(Uuid, String),
    #[error("pending transfer {0} has expired")]
    PendingExpired(Uuid),
    #[error("cannot post {amount} of pending transfer {pending} holding {held}")]
    PostExceedsPending {
        pending: Uuid,
        amount: i64,
        held: i64,
    },
    #[error("transfer {0} is not pending")]
    NotPending(Uuid),
    #[error("a batch holds 1 to {BATCH_MAX} transfers, got {0}")]
    BadBatch(usize),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The bucket of an account's balance a transfer id lands in.
fn bucket_of(transfer_id: Uuid, buckets: i16) -> i16 {
    let bytes = transfer_id.as_bytes();
    // The last bytes of a v4/v5 UUID are random or hashed, so they spread evenly.
    let spread = u16::from_be_bytes([bytes[14], bytes[15]]);
    i16::try_from(spread % u16::try_from(buckets.max(1)).unwrap_or(1)).unwrap_or(0)
}

/// A row of `transfers` as the queries below select it (the same columns in each, checked
/// against the schema at compile time). `timeout_at` is not in it: only the resolution of a
/// pending transfer reads it, from a query of its own.
struct TransferRow {
    id: Uuid,
    debit_account_id: Uuid,
    credit_account_id: Uuid,
    amount: i64,
    currency: String,
    kind: String,
    pending_id: Option<Uuid>,
    code: String,
    saga_id: Option<Uuid>,
    created_at: chrono::DateTime<chrono::Utc>,
    seq: i64,
}

impl From<TransferRow> for Transfer {
    fn from(row: TransferRow) -> Self {
        Transfer {
            record: paykit::contract::Transfer {
                id: row.id,
                debit_account_id: row.debit_account_id,
                credit_account_id: row.credit_account_id,
                amount: row.amount,
                currency: row.currency,
                kind: row.kind,
                pending_id: row.pending_id,
                code: row.code,
                saga_id: row.saga_id,
                created_at: row.created_at,
            },
            seq: row.seq,
        }
    }
}

pub async fn currency_exists(
    connection: &mut PgConnection,
    currency: Currency,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM currencies WHERE code = $1) AS "exists!""#,
        currency.as_str()
    )
    .fetch_one(connection)
    .await
}

/// Creates an account with its balance rows. Idempotent on `id`: the same account again is
/// returned as it is; another kind or currency under that id is an error.
pub async fn create_account(
    pool: &PgPool,
    id: Uuid,
    kind: AccountKind,
    currency: Currency,
    owner_ref: Option<&str>,
) -> Result<Account, LedgerError> {
    let mut tx = pool.begin().await?;
    if !currency_exists(&mut tx, currency).await? {
        return Err(LedgerError::UnknownCurrency(currency.to_string()));
    }
    let inserted = sqlx::query!(
        "INSERT INTO accounts (id, currency, kind, debits_must_not_exceed_credits, balance_buckets, owner_ref)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        id,
        currency.as_str(),
        kind.as_str(),
        debits_must_not_exceed_credits(kind),
        buckets(kind),
        owner_ref,
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 1 {
        sqlx::query!(
            "INSERT INTO account_balances (account_id, bucket, limit_flag_debits)
             SELECT $1, b, $3 FROM generate_series(0, $2 - 1) AS b",
            id,
            i32::from(buckets(kind)),
            debits_must_not_exceed_credits(kind),
        )
        .execute(&mut *tx)
        .await?;
    }
    let account = account(&mut tx, id)
        .await?
        .ok_or(LedgerError::AccountNotFound(id))?;
    if account.kind != kind || account.currency != currency.as_str() {
        return Err(LedgerError::ExistsWithDifferentContent(id));
    }
    tx.commit().await?;
    Ok(account)
}

/// The platform's own account of a kind (funding, fees, suspense) in a currency, made on first use.
pub async fn system_account(
    pool: &PgPool,
    kind: AccountKind,
    currency: Currency,
) -> Result<Account, LedgerError> {
    {
        let mut connection = pool.acquire().await?;
        if let Some(id) = system_account_id(&mut connection, kind, currency).await? {
            return account(&mut connection, id)
                .await?
                .ok_or(LedgerError::AccountNotFound(id));
        }
    }
    // Deterministic id: two callers racing to make it make the same account.
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("paytool/system/{}/{currency}", kind.as_str()).as_bytes(),
    );
    create_account(pool, id, kind, currency, Some("platform")).await
}

pub async fn system_account_id(
    connection: &mut PgConnection,
    kind: AccountKind,
    currency: Currency,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM accounts WHERE kind = $1 AND currency = $2",
        kind.as_str(),
        currency.as_str()
    )
    .fetch_optional(connection)
    .await
}

pub async fn account(
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Account>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, currency::text AS "currency!", kind, owner_ref, closed FROM accounts WHERE id = $1"#,
        id
    )
    .fetch_optional(connection)
    .await?;
    Ok(row.map(|row| Account {
        id: row.id,
        currency: row.currency,
        kind: AccountKind::parse(&row.kind).unwrap_or(AccountKind::Suspense),
        owner_ref: row.owner_ref,
        closed: row.closed,
    }))
}

/// Two accounts in one round trip, as [`account`] reads each.
pub async fn account_pair(
    connection: &mut PgConnection,
    first: Uuid,
    second: Uuid,
) -> Result<(Option<Account>, Option<Account>), sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT id, currency::text AS "currency!", kind, owner_ref, closed FROM accounts WHERE id = ANY($1)"#,
        &[first, second][..]
    )
    .fetch_all(connection)
    .await?;
    let mut found = rows.into_iter().map(|row| Account {
        id: row.id,
        currency: row.currency,
        kind: AccountKind::parse(&row.kind).unwrap_or(AccountKind::Suspense),
        owner_ref: row.owner_ref,
        closed: row.closed,
    });
    let (a, b) = (found.next(), found.next());
    let pick = |id: Uuid| [&a, &b].into_iter().flatten().find(|x| x.id == id).cloned();
    Ok((pick(first), pick(second)))
}

pub async fn balance(connection: &mut PgConnection, id: Uuid) -> Result<Balance, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT coalesce(sum(debits_pending), 0)::bigint AS "dp!", coalesce(sum(debits_posted), 0)::bigint AS "dq!",
                coalesce(sum(credits_pending), 0)::bigint AS "cp!", coalesce(sum(credits_posted), 0)::bigint AS "cq!"
         FROM account_balances WHERE account_id = $1"#,
        id
    )
    .fetch_one(connection)
    .await?;
    Ok(Balance {
        debits_pending: row.dp,
        debits_posted: row.dq,
        credits_pending: row.cp,
        credits_posted: row.cq,
    })
}

pub async fn transfer(
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Transfer>, sqlx::Error> {
    let row = sqlx::query_as!(
        TransferRow,
        r#"SELECT id, debit_account_id, credit_account_id, amount, currency::text AS "currency!", kind,
                pending_id, code, saga_id, created_at, seq
         FROM transfers WHERE id = $1"#,
        id
    )
    .fetch_optional(connection)
    .await?;
    Ok(row.map(Transfer::from))
}

/// An account's transfers, newest first; `before` is the cursor from the previous page.
pub async fn history(
    connection: &mut PgConnection,
    account_id: Uuid,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Transfer>, sqlx::Error> {
    let rows = sqlx::query_as!(
        TransferRow,
        r#"SELECT id, debit_account_id, credit_account_id, amount, currency::text AS "currency!", kind,
                pending_id, code, saga_id, created_at, seq
         FROM transfers
         WHERE (debit_account_id = $1 OR credit_account_id = $1) AND seq < $2
         ORDER BY seq DESC LIMIT $3"#,
        account_id,
        before.unwrap_or(i64::MAX),
        limit.clamp(1, HISTORY_PAGE_MAX),
    )
    .fetch_all(connection)
    .await?;
    Ok(rows.into_iter().map(Transfer::from).collect())
}

/// Applies a batch inside the caller's transaction, in a savepoint: on any error nothing of
/// the batch remains and the caller's transaction is still usable.
pub async fn apply_in(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewTransfer],
) -> Result<Vec<Applied>, LedgerError> {
    check_batch_size(batch)?;
    let mut savepoint = sqlx::Connection::begin(&mut **tx).await?;
    match apply_batch(&mut savepoint, batch).await {
        Ok(applied) => {
            savepoint.commit().await?;
            Ok(applied)
        }
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

/// Applies a batch inside the caller's transaction without a savepoint (two round trips
/// fewer): on an error the caller must roll its whole transaction back, for part of the batch
/// may have been written.
pub async fn apply_unguarded(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewTransfer],
) -> Result<Vec<Applied>, LedgerError> {
    check_batch_size(batch)?;
    apply_batch(tx, batch).await
}

/// The most transfers [`apply_grouped`] takes at once: the payments of one group commit, each
/// a capture and its fee.
pub const GROUP_TRANSFERS_MAX: usize = 128;

/// Like [`apply_unguarded`], for the orchestrator's group commit: the transfers of several
/// payments (each its own saga's) applied as one batch, all or none, with up to
/// [`GROUP_TRANSFERS_MAX`] of them. A refusal of any one refuses all; the caller then applies
/// them one payment at a time.
pub async fn apply_grouped(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewTransfer],
) -> Result<Vec<Applied>, LedgerError> {
    if batch.is_empty() || batch.len() > GROUP_TRANSFERS_MAX {
        return Err(LedgerError::BadBatch(batch.len()));
    }
    apply_batch(tx, batch).await
}

/// Applies a batch in a transaction of its own (no savepoint needed: an error rolls it all back).
pub async fn apply(pool: &PgPool, batch: &[NewTransfer]) -> Result<Vec<Applied>, LedgerError> {
    check_batch_size(batch)?;
    let mut tx = pool.begin().await?;
    let applied = apply_batch(&mut tx, batch).await?;
    tx.commit().await?;
    Ok(applied)
}

/// A batch is one to [`BATCH_MAX`] transfers, checked before anything is asked of the database.
fn check_batch_size(batch: &[NewTransfer]) -> Result<(), LedgerError> {
    if batch.is_empty() || batch.len() > BATCH_MAX {
        return Err(LedgerError::BadBatch(batch.len()));
    }
    Ok(())
}

/// What one transfer does to the balance rows, after it has been resolved against the
/// pending transfer it names, if any.
struct Resolved {
    request: NewTransfer,
    debit: Uuid,
    credit: Uuid,
    currency: String,
    amount: i64,
    pending_id: Option<Uuid>,
    /// The pending amount a post/void releases.
    releases: i64,
    bucket_key: Uuid,
}

/// What a batch needs to know of an account.
struct AccountFacts {
    currency: String,
    closed: bool,
    buckets: i16,
    limited: bool,
}

/// Applies a batch in as few round trips as the work allows: one read of the transfers it
/// names, one of its accounts, one locking read of every balance row it touches (in one global
/// order, so two batches can never wait on each other in a cycle), the inserts, and one update
/// of all the rows. A posted transfer is seven statements with BEGIN and COMMIT, like TPC-B's.
async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[NewTransfer],
) -> Result<Vec<Applied>, LedgerError> {
    let batch_id = Uuid::new_v4();
    let ids: Vec<Uuid> = batch.iter().map(|t| t.id).collect();
    let existing: BTreeMap<Uuid, Transfer> = sqlx::query_as!(
        TransferRow,
        r#"SELECT id, debit_account_id, credit_account_id, amount, currency::text AS "currency!", kind,
                pending_id, code, saga_id, created_at, seq
         FROM transfers WHERE id = ANY($1)"#,
        &ids
    )
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|row| (row.id, Transfer::from(row)))
    .collect();

    let mut outcomes: Vec<Option<Applied>> = vec![None; batch.len()];
    let mut to_apply: Vec<(usize, Resolved)> = Vec::new();
    for (index, request) in batch.iter().enumerate() {
        if let Some(found) = existing.get(&request.id) {
            if same_transfer(found, request) {
                outcomes[index] = Some(Applied::Exists(found.clone()));
                continue;
            }
            return Err(LedgerError::ExistsWithDifferentContent(request.id));
        }
        to_apply.push((index, resolve(tx, request).await?));
    }
    if to_apply.is_empty() {
        return Ok(outcomes.into_iter().flatten().collect());
    }

    let account_ids: Vec<Uuid> = to_apply
        .iter()
        .flat_map(|(_, r)| [r.debit, r.credit])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut accounts: BTreeMap<Uuid, AccountFacts> = BTreeMap::new();
    for row in sqlx::query!(
        r#"SELECT id, currency::text AS "currency!", closed, balance_buckets, debits_must_not_exceed_credits
         FROM accounts WHERE id = ANY($1)"#,
        &account_ids
    )
    .fetch_all(&mut **tx)
    .await?
    {
        accounts.insert(
            row.id,
            AccountFacts {
                currency: row.currency,
                closed: row.closed,
                buckets: row.balance_buckets,
                limited: row.debits_must_not_exceed_credits,
            },
        );
    }
    let mut rows: BTreeMap<(Uuid, i16), Balance> = BTreeMap::new();
    for (_, r) in &to_apply {
        for id in [r.debit, r.credit] {
            let facts = accounts.get(&id).ok_or(LedgerError::AccountNotFound(id))?;
            if facts.currency != r.currency {
                return Err(LedgerError::CurrencyMismatch {
                    account: id,
                    account_currency: facts.currency.clone(),
                    transfer: r.currency.clone(),
                });
            }
            // A closed account may still see its reservations resolved, nothing new.
            if facts.closed && r.pending_id.is_none() {
                return Err(LedgerError::AccountClosed(id));
            }
            rows.insert(
                (id, bucket_of(r.bucket_key, facts.buckets)),
                Balance::default(),
            );
        }
    }

    let (lock_accounts, lock_buckets): (Vec<Uuid>, Vec<i16>) = rows.keys().copied().unzip();
    for row in sqlx::query!(
        "SELECT b.account_id, b.bucket, b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted
         FROM account_balances b
         JOIN unnest($1::uuid[], $2::int2[]) AS k(account_id, bucket)
           ON b.account_id = k.account_id AND b.bucket = k.bucket
         ORDER BY b.account_id, b.bucket
         FOR UPDATE OF b",
        &lock_accounts,
        &lock_buckets,
    )
    .fetch_all(&mut **tx)
    .await?
    {
        rows.insert(
            (row.account_id, row.bucket),
            Balance {
                debits_pending: row.debits_pending,
                debits_posted: row.debits_posted,
                credits_pending: row.credits_pending,
                credits_posted: row.credits_posted,
            },
        );
    }

    let mut timeouts: BTreeMap<Uuid, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
    for (index, r) in to_apply {
        let debit_facts = &accounts[&r.debit];
        let debit_key = (r.debit, bucket_of(r.bucket_key, debit_facts.buckets));
        let credit_key = (
            r.credit,
            bucket_of(r.bucket_key, accounts[&r.credit].buckets),
        );
        let mut debit = rows[&debit_key];
        let mut credit = rows[&credit_key];
        match &r.request.kind {
            TransferKind::Posted => {
                debit.debits_posted += r.amount;
                credit.credits_posted += r.amount;
            }
            TransferKind::Pending { .. } => {
                debit.debits_pending += r.amount;
                credit.credits_pending += r.amount;
            }
            TransferKind::PostPending { .. } => {
                debit.debits_pending -= r.releases;
                credit.credits_pending -= r.releases;
                debit.debits_posted += r.amount;
                credit.credits_posted += r.amount;
            }
            TransferKind::VoidPending { .. } => {
                debit.debits_pending -= r.releases;
                credit.credits_pending -= r.releases;
            }
        }
        // The limit, checked here for a clear error; the table's CHECK constraint is the backstop.
        if debit_facts.limited && debit.debits_pending + debit.debits_posted > debit.credits_posted
        {
            let before = rows[&debit_key];
            return Err(LedgerError::InsufficientFunds {
                account: r.debit,
                available: before.credits_posted - before.debits_posted - before.debits_pending,
                needed: r.amount,
            });
        }
        assert!(
            debit.debits_pending >= 0 && credit.credits_pending >= 0,
            "a pending balance went below zero"
        );
        rows.insert(debit_key, debit);
        rows.insert(credit_key, credit);
        let timeout_at = match r.request.kind {
            TransferKind::Pending {
                timeout_ms: Some(ms),
            } => Some(
                chrono::Utc::now()
                    + chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2)),
            ),
            _ => None,
        };
        if let Some(until) = timeout_at {
            timeouts.insert(r.request.id, until);
        }
        let row = sqlx::query_as!(
            TransferRow,
            r#"INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, currency, kind, pending_id, timeout_at, code, saga_id, batch_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             RETURNING id, debit_account_id, credit_account_id, amount, currency::text AS "currency!", kind,
                       pending_id, code, saga_id, created_at, seq"#,
            r.request.id,
            r.debit,
            r.credit,
            r.amount,
            &r.currency,
            r.request.kind.as_str(),
            r.pending_id,
            timeout_at,
            r.request.code,
            r.request.saga_id,
            batch_id,
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("transfers_pending_resolved_once") => {
                LedgerError::PendingAlreadyResolved(r.pending_id.unwrap_or_default(), "resolved".into())
            }
            _ => LedgerError::Database(error),
        })?;
        outcomes[index] = Some(Applied::Created(Transfer::from(row)));
    }

    // The open reservations' list follows the batch: a reservation with a timeout joins it, a
    // post or void takes its reservation off (one statement each, only when there is one).
    let (mut opened, mut opened_until, mut resolved) = (Vec::new(), Vec::new(), Vec::new());
    for outcome in outcomes.iter().flatten() {
        if let Applied::Created(transfer) = outcome {
            match (transfer.kind.as_str(), transfer.pending_id) {
                ("pending", _) => {
                    if let Some(until) = timeouts.get(&transfer.id) {
                        opened.push(transfer.id);
                        opened_until.push(*until);
                    }
                }
                (_, Some(pending)) => resolved.push(pending),
                _ => {}
            }
        }
    }
    if !opened.is_empty() {
        sqlx::query!(
            "INSERT INTO open_reservations (pending_id, timeout_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[])",
            &opened,
            &opened_until,
        )
        .execute(&mut **tx)
        .await?;
    }
    if !resolved.is_empty() {
        sqlx::query!(
            "DELETE FROM open_reservations WHERE pending_id = ANY($1)",
            &resolved
        )
        .execute(&mut **tx)
        .await?;
    }

    // Column arrays for one UPDATE ... FROM unnest(...) over every touched row.
    let accounts_col: Vec<Uuid> = rows.keys().map(|(account, _)| *account).collect();
    let buckets_col: Vec<i16> = rows.keys().map(|(_, bucket)| *bucket).collect();
    let column = |field: fn(&Balance) -> i64| -> Vec<i64> { rows.values().map(field).collect() };
    sqlx::query!(
        "UPDATE account_balances b
         SET debits_pending = v.dp, debits_posted = v.dq, credits_pending = v.cp, credits_posted = v.cq
         FROM unnest($1::uuid[], $2::int2[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) AS v(account_id, bucket, dp, dq, cp, cq)
         WHERE b.account_id = v.account_id AND b.bucket = v.bucket",
        &accounts_col,
        &buckets_col,
        &column(|b| b.debits_pending),
        &column(|b| b.debits_posted),
        &column(|b| b.credits_pending),
        &column(|b| b.credits_posted),
    )
    .execute(&mut **tx)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("balances_debits_must_not_exceed_credits") => {
            // Unreachable while the check above holds; the database refuses regardless.
            LedgerError::InsufficientFunds { account: Uuid::nil(), available: 0, needed: 0 }
        }
        _ => LedgerError::Database(error),
    })?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every transfer of the batch has an outcome"))
        .collect())
}

fn same_transfer(existing: &Transfer, request: &NewTransfer) -> bool {
    let kind_matches = existing.kind == request.kind.as_str();
    let pending_matches = match &request.kind {
        TransferKind::PostPending { pending_id, .. } | TransferKind::VoidPending { pending_id } => {
            existing.pending_id == Some(*pending_id)
        }
        _ => {
            existing.pending_id.is_none()
                && existing.debit_account_id == request.debit
                && existing.credit_account_id == request.credit
                && existing.amount == request.amount
                && existing.currency == request.currency.as_str()
        }
    };
    kind_matches && pending_matches && existing.code == request.code
}

/// Checks a transfer on its own and, for a post or void, against the reservation it names
/// (locked, so that two resolutions of one reservation queue). Accounts are checked with the
/// batch, in one query.
async fn resolve(
    tx: &mut Transaction<'_, Postgres>,
    request: &NewTransfer,
) -> Result<Resolved, LedgerError> {
    match &request.kind {
        TransferKind::Posted | TransferKind::Pending { .. } => {
            if request.amount <= 0 || request.amount > MAX_AMOUNT_MINOR {
                return Err(LedgerError::BadAmount(request.amount));
            }
            if request.debit == request.credit {
                return Err(LedgerError::SameAccount);
            }
            Ok(Resolved {
                request: request.clone(),
                debit: request.debit,
                credit: request.credit,
                currency: request.currency.to_string(),
                amount: request.amount,
                pending_id: None,
                releases: 0,
                bucket_key: request.id,
            })
        }
        TransferKind::PostPending { pending_id, .. } | TransferKind::VoidPending { pending_id } => {
            let row = sqlx::query!(
                r#"SELECT t.id, t.debit_account_id, t.credit_account_id, t.amount, t.currency::text AS "currency!",
                        t.kind, t.pending_id, t.code, t.saga_id, t.created_at, t.seq, t.timeout_at,
                        (SELECT r.kind FROM transfers r WHERE r.pending_id = t.id) AS resolved_by
                 FROM transfers t WHERE t.id = $1 FOR UPDATE OF t"#,
                pending_id
            )
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(LedgerError::PendingNotFound(*pending_id))?;
            let pending = Transfer::from(TransferRow {
                id: row.id,
                debit_account_id: row.debit_account_id,
                credit_account_id: row.credit_account_id,
                amount: row.amount,
                currency: row.currency,
                kind: row.kind,
                pending_id: row.pending_id,
                code: row.code,
                saga_id: row.saga_id,
                created_at: row.created_at,
                seq: row.seq,
            });
            if pending.kind != "pending" {
                return Err(LedgerError::NotPending(*pending_id));
            }
            if let Some(how) = row.resolved_by {
                let how = if how == "post_pending" {
                    "posted"
                } else {
                    "voided"
                };
                return Err(LedgerError::PendingAlreadyResolved(
                    *pending_id,
                    how.to_string(),
                ));
            }
            let timeout_at = row.timeout_at;
            let amount = match &request.kind {
                TransferKind::PostPending { amount, .. } => {
                    if timeout_at.is_some_and(|at| at <= chrono::Utc::now()) {
                        return Err(LedgerError::PendingExpired(*pending_id));
                    }
                    let amount = amount.unwrap_or(pending.amount);
                    if amount <= 0 || amount > pending.amount {
                        return Err(LedgerError::PostExceedsPending {
                            pending: *pending_id,
                            amount,
                            held: pending.amount,
                        });
                    }
                    amount
                }
                _ => pending.amount,
            };
            Ok(Resolved {
                request: request.clone(),
                debit: pending.debit_account_id,
                credit: pending.credit_account_id,
                currency: pending.currency.clone(),
                amount,
                pending_id: Some(*pending_id),
                releases: pending.amount,
                // The pending amounts sit in the pending transfer's buckets.
                bucket_key: pending.id,
            })
        }
    }
}

/// Voids pending transfers whose timeout has passed (TigerBeetle's expiry). Returns how many.
pub async fn expire_pending(pool: &PgPool, limit: i64) -> Result<usize, LedgerError> {
    let due = sqlx::query!(
        r#"SELECT t.id, t.currency::text AS "currency!"
         FROM open_reservations o JOIN transfers t ON t.id = o.pending_id
         WHERE o.timeout_at <= now()
         ORDER BY o.timeout_at LIMIT $1"#,
        limit
    )
    .fetch_all(pool)
    .await?;
    let mut voided = 0;
    for row in due {
        let (pending_id, currency) = (row.id, row.currency);
        let currency = Currency::parse(&currency)
            .map_err(|_| LedgerError::UnknownCurrency(currency.clone()))?;
        let void = NewTransfer {
            id: Uuid::new_v5(&pending_id, b"expire"),
            debit: Uuid::nil(),
            credit: Uuid::nil(),
            amount: 0,
            currency,
            kind: TransferKind::VoidPending { pending_id },
            code: "expired",
            saga_id: None,
        };
        match apply(pool, &[void]).await {
            Ok(_) => voided += 1,
            // Posted or voided meanwhile by its saga: nothing left to expire.
            Err(LedgerError::PendingAlreadyResolved(..)) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(voided)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_spread_transfer_ids_evenly() {
        let mut counts = [0u32; HOT_ACCOUNT_BUCKETS as usize];
        for _ in 0..16_000 {
            counts[bucket_of(Uuid::new_v4(), HOT_ACCOUNT_BUCKETS) as usize] += 1;
        }
        // 1000 expected per bucket; 4 standard deviations is about ±125.
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(bucket_of(Uuid::new_v4(), 1), 0);
    }
}
