//! The ledger's invariants, checked against the database as it is. `paytool ledger verify` and
//! `GET /internal/ledger/verify` both run these; the tests run them after every step.

use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    pub ok: bool,
    /// Up to [`VIOLATIONS_SHOWN`] offending rows, as text.
    pub violations: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub accounts: i64,
    pub transfers: i64,
    pub checks: Vec<Check>,
}

const VIOLATIONS_SHOWN: i64 = 20;

/// Each check is a query returning one text row per violation.
const CHECKS: &[(&str, &str, &str)] = &[
    (
        "debits_equal_credits",
        "per currency, total debits equal total credits, posted and pending alike",
        "SELECT a.currency || ': posted debits ' || sum(b.debits_posted) || ' vs credits ' || sum(b.credits_posted)
                || ', pending debits ' || sum(b.debits_pending) || ' vs credits ' || sum(b.credits_pending)
         FROM account_balances b JOIN accounts a ON a.id = b.account_id
         GROUP BY a.currency
         HAVING sum(b.debits_posted) <> sum(b.credits_posted) OR sum(b.debits_pending) <> sum(b.credits_pending)",
    ),
    (
        "no_wallet_below_zero",
        "no wallet's available balance (credits less posted and pending debits) is below zero",
        "SELECT a.id || ' available ' || (sum(b.credits_posted) - sum(b.debits_posted) - sum(b.debits_pending))
         FROM account_balances b JOIN accounts a ON a.id = b.account_id
         WHERE a.debits_must_not_exceed_credits
         GROUP BY a.id
         HAVING sum(b.credits_posted) - sum(b.debits_posted) - sum(b.debits_pending) < 0",
    ),
    (
        "balances_equal_transfers",
        "every account's balances equal the sum of its transfers",
        "WITH open_pending AS (
             SELECT t.* FROM transfers t
             WHERE t.kind = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)
         ), moves (account_id, dp, dq, cp, cq) AS (
             SELECT debit_account_id, 0::numeric, amount::numeric, 0::numeric, 0::numeric FROM transfers WHERE kind IN ('posted', 'post_pending')
             UNION ALL SELECT credit_account_id, 0, 0, 0, amount FROM transfers WHERE kind IN ('posted', 'post_pending')
             UNION ALL SELECT debit_account_id, amount, 0, 0, 0 FROM open_pending
             UNION ALL SELECT credit_account_id, 0, 0, amount, 0 FROM open_pending
         ), expected AS (
             SELECT account_id, sum(dp) AS dp, sum(dq) AS dq, sum(cp) AS cp, sum(cq) AS cq FROM moves GROUP BY account_id
         ), actual AS (
             SELECT account_id, sum(debits_pending)::numeric AS dp, sum(debits_posted)::numeric AS dq,
                    sum(credits_pending)::numeric AS cp, sum(credits_posted)::numeric AS cq
             FROM account_balances GROUP BY account_id
         )
         SELECT coalesce(a.account_id, e.account_id) || ' holds ' || coalesce(a.dp, 0) || '/' || coalesce(a.dq, 0) || '/'
                || coalesce(a.cp, 0) || '/' || coalesce(a.cq, 0) || ' but its transfers make '
                || coalesce(e.dp, 0) || '/' || coalesce(e.dq, 0) || '/' || coalesce(e.cp, 0) || '/' || coalesce(e.cq, 0)
         FROM actual a FULL JOIN expected e ON e.account_id = a.account_id
         WHERE coalesce(a.dp, 0) <> coalesce(e.dp, 0) OR coalesce(a.dq, 0) <> coalesce(e.dq, 0)
            OR coalesce(a.cp, 0) <> coalesce(e.cp, 0) OR coalesce(a.cq, 0) <> coalesce(e.cq, 0)",
    ),
    (
        "transfers_applied_once",
        "no transfer id applied twice, and no pending transfer resolved (posted or voided) twice",
        "SELECT 'transfer ' || id || ' appears ' || count(*) || ' times' FROM transfers GROUP BY id HAVING count(*) > 1
         UNION ALL
         SELECT 'pending ' || pending_id || ' resolved ' || count(*) || ' times' FROM transfers
         WHERE pending_id IS NOT NULL GROUP BY pending_id HAVING count(*) > 1",
    ),
    (
        "open_reservations_listed",
        "the list of open reservations the expiry reads is exactly the pending transfers with a timeout that nothing posted or voided",
        "SELECT coalesce(t.id, o.pending_id) || CASE WHEN o.pending_id IS NULL THEN ' is open but not listed' ELSE ' is listed but not open' END
         FROM (SELECT p.id FROM transfers p
               WHERE p.kind = 'pending' AND p.timeout_at IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)) t
         FULL JOIN open_reservations o ON o.pending_id = t.id
         WHERE t.id IS NULL OR o.pending_id IS NULL",
    ),
    (
        "refunds_within_captures",
        "no payment is refunded beyond what was captured, and its refund transfers add up to what it records",
        "SELECT p.id || ' captured ' || p.captured_amount || ', refunded ' || p.refunded_amount
                || ', refund transfers ' || coalesce(sum(t.amount), 0)
         FROM sagas p
         LEFT JOIN sagas r ON r.payment_id = p.id AND r.kind = 'refund'
         LEFT JOIN transfers t ON t.saga_id = r.id AND t.code = 'refund'
         WHERE p.kind = 'payment'
         GROUP BY p.id, p.captured_amount, p.refunded_amount
         HAVING p.refunded_amount > p.captured_amount OR coalesce(sum(t.amount), 0) <> p.refunded_amount",
    ),
];

pub async fn verify(pool: &PgPool) -> Result<Report, sqlx::Error> {
    // One snapshot for every check: concurrent payments cannot make a consistent ledger look
    // inconsistent between two queries.
    let mut tx = pool.begin().await?;
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut checks = Vec::with_capacity(CHECKS.len());
    for (name, description, query) in CHECKS {
        // Made at run time, one wrapper around each check of the table: checked by running,
        // which every test that verifies the ledger does, not by the compiler.
        let violations: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT v FROM ({query}) AS violations(v) LIMIT {VIOLATIONS_SHOWN}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        checks.push(Check {
            name,
            description,
            ok: violations.is_empty(),
            violations,
        });
    }
    let accounts: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM accounts"#)
        .fetch_one(&mut *tx)
        .await?;
    let transfers: i64 = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM transfers"#)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Report {
        ok: checks.iter().all(|c| c.ok),
        accounts,
        transfers,
        checks,
    })
}
