//! The ledger and the sagas as a library, on a real PostgreSQL: random interleavings with the
//! invariants checked after every step, contention on one wallet, reservations that expire.

use orchestrator::invariants;
use orchestrator::ledger::{self, AccountKind, LedgerError, NewTransfer, TransferKind};
use orchestrator::saga::{Request, SagaSettings, Sagas};
use paykit::money::{Currency, Money};
use proptest::prelude::*;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

async fn ledger_pool() -> PgPool {
    let database = paykit::testing::fresh_database().await;
    let pool = database.pool().expect("pool");
    orchestrator::startup::migrate(&pool)
        .await
        .expect("migrations apply");
    pool
}

fn jpy(value: i64) -> Money {
    Money::new(value, Currency::parse("JPY").expect("code"))
}

async fn open(pool: &PgPool, kind: AccountKind) -> Uuid {
    let id = Uuid::new_v4();
    ledger::create_account(pool, id, kind, Currency::parse("JPY").expect("code"), None)
        .await
        .expect("account");
    id
}

async fn available(pool: &PgPool, account: Uuid) -> i64 {
    let mut connection = pool.acquire().await.expect("connection");
    ledger::balance(&mut connection, account)
        .await
        .expect("balance")
        .available()
}

async fn assert_invariants(pool: &PgPool, context: &str) {
    let report = invariants::verify(pool).await.expect("verify runs");
    assert!(
        report.ok,
        "{context}: {}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}

#[derive(Debug, Clone)]
enum Op {
    TopUp {
        wallet: usize,
        value: i64,
    },
    Pay {
        wallet: usize,
        merchant: usize,
        value: i64,
        fee_bps: u32,
    },
    Send {
        from: usize,
        to: usize,
        value: i64,
    },
    Refund {
        payment: usize,
        value: i64,
    },
    /// A reservation left to expire, as a crashed saga's would.
    Abandon {
        wallet: usize,
        merchant: usize,
        value: i64,
    },
    Expire,
    /// The same request sent again with its Idempotency-Key.
    Replay,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..5_000i64).prop_map(|(wallet, value)| Op::TopUp { wallet, value }),
        (0..3usize, 0..2usize, 1..4_000i64, 0..500u32).prop_map(
            |(wallet, merchant, value, fee_bps)| Op::Pay {
                wallet,
                merchant,
                value,
                fee_bps
            }
        ),
        (0..3usize, 0..3usize, 1..3_000i64).prop_map(|(from, to, value)| Op::Send {
            from,
            to,
            value
        }),
        (0..8usize, 1..3_000i64).prop_map(|(payment, value)| Op::Refund { payment, value }),
        (0..3usize, 0..2usize, 1..2_000i64).prop_map(|(wallet, merchant, value)| Op::Abandon {
            wallet,
            merchant,
            value
        }),
        Just(Op::Expire),
        Just(Op::Replay),
    ]
}

/// What the wallets must hold, computed without the ledger: the model the ledger is held to.
#[derive(Default)]
struct Model {
    available: HashMap<Uuid, i64>,
    /// Per payment: the wallet that paid and what is left to refund.
    refundable: HashMap<Uuid, (Uuid, i64)>,
    /// Abandoned reservations not yet expired: (wallet, amount).
    held: Vec<(Uuid, i64)>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_every_invariant_and_match_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let pool = shared_pool().await;
            let sagas = Sagas::new(pool.clone(), SagaSettings::default());
            let wallets = [open(&pool, AccountKind::Wallet).await, open(&pool, AccountKind::Wallet).await, open(&pool, AccountKind::Wallet).await];
            let merchants = [open(&pool, AccountKind::Merchant).await, open(&pool, AccountKind::Merchant).await];
            let mut model = Model::default();
            let mut payments: Vec<Uuid> = Vec::new();
            let mut last: Option<(String, Request)> = None;
            for (step, op) in ops.iter().enumerate() {
                let key = Uuid::new_v4().to_string();
                match op.clone() {
                    Op::TopUp { wallet, value } => {
                        let request = Request::TopUp { wallet_account_id: wallets[wallet], amount: jpy(value) };
                        let view = sagas.start("test", &key, request.clone()).await.expect("top-up");
                        assert_eq!(view.state, "completed");
                        *model.available.entry(wallets[wallet]).or_default() += value;
                        last = Some((key, request));
                    }
                    Op::Pay { wallet, merchant, value, fee_bps } => {
                        let request = Request::Payment { wallet_account_id: wallets[wallet], merchant_account_id: merchants[merchant], amount: jpy(value), fee_bps, reference: None, metadata: None };
                        let affordable = model.available.get(&wallets[wallet]).copied().unwrap_or(0) >= value;
                        let view = sagas.start("test", &key, request.clone()).await.expect("payment");
                        if affordable {
                            assert_eq!(view.state, "completed", "step {step}: an affordable payment completes");
                            *model.available.entry(wallets[wallet]).or_default() -= value;
                            model.refundable.insert(view.id, (wallets[wallet], value));
                            payments.push(view.id);
                        } else {
                            assert_eq!(view.state, "declined", "step {step}: an unaffordable payment is declined");
                        }
                        last = Some((key, request));
                    }
                    Op::Send { from, to, value } => {
                        if from == to { continue; }
                        let request = Request::P2p { from_account_id: wallets[from], to_account_id: wallets[to], amount: jpy(value) };
                        let affordable = model.available.get(&wallets[from]).copied().unwrap_or(0) >= value;
                        let view = sagas.start("test", &key, request.clone()).await.expect("p2p");
                        assert_eq!(view.state == "completed", affordable, "step {step}");
                        if affordable {
                            *model.available.entry(wallets[from]).or_default() -= value;
                            *model.available.entry(wallets[to]).or_default() += value;
                        }
                        last = Some((key, request));
                    }
                    Op::Refund { payment, value } => {
                        let Some(payment_id) = payments.get(payment).copied() else { continue };
                        let (wallet, left) = model.refundable[&payment_id];
                        let request = Request::Refund { payment_id, amount: jpy(value) };
                        match sagas.start("test", &key, request.clone()).await {
                            Ok(view) => {
                                assert!(value <= left, "step {step}: a refund above what is left must not pass");
                                assert_eq!(view.state, "completed");
                                model.refundable.insert(payment_id, (wallet, left - value));
                                *model.available.entry(wallet).or_default() += value;
                                last = Some((key, request));
                            }
                            Err(error) => assert!(value > left, "step {step}: refused {error} though {value} <= {left}"),
                        }
                    }
                    Op::Abandon { wallet, merchant, value } => {
                        let reserve = NewTransfer {
                            id: Uuid::new_v4(),
                            debit: wallets[wallet],
                            credit: merchants[merchant],
                            amount: value,
                            currency: Currency::parse("JPY").expect("code"),
                            kind: TransferKind::Pending { timeout_ms: Some(1) },
                            code: "payment_reserve",
                            saga_id: None,
                        };
                        let affordable = model.available.get(&wallets[wallet]).copied().unwrap_or(0) >= value;
                        match ledger::apply(&pool, &[reserve]).await {
                            Ok(_) => {
                                assert!(affordable, "step {step}");
                                // Held until it expires; the model releases it on the next expiry.
                                *model.available.entry(wallets[wallet]).or_default() -= value;
                                model.held.push((wallets[wallet], value));
                            }
                            Err(LedgerError::InsufficientFunds { .. }) => assert!(!affordable, "step {step}"),
                            Err(error) => panic!("step {step}: {error}"),
                        }
                    }
                    Op::Expire => {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        ledger::expire_pending(&pool, 1_000).await.expect("expiry");
                        // Every abandoned reservation of this case has expired: give it back.
                        for (wallet, value) in std::mem::take(&mut model.held) {
                            *model.available.entry(wallet).or_default() += value;
                        }
                    }
                    Op::Replay => {
                        let Some((key, request)) = last.clone() else { continue };
                        let before: Vec<i64> = futures_available(&pool, &wallets).await;
                        let view = sagas.start("test", &key, request).await.expect("replay");
                        assert!(view.replayed);
                        assert_eq!(futures_available(&pool, &wallets).await, before, "step {step}: a replay moves nothing");
                    }
                }
                assert_invariants(&pool, &format!("after step {step} ({op:?})")).await;
                for wallet in wallets {
                    assert_eq!(available(&pool, wallet).await, model.available.get(&wallet).copied().unwrap_or(0), "step {step}: wallet {wallet}");
                }
            }
        });
    }
}

async fn futures_available(pool: &PgPool, wallets: &[Uuid]) -> Vec<i64> {
    let mut out = Vec::new();
    for wallet in wallets {
        out.push(available(pool, *wallet).await);
    }
    out
}

/// One migrated database for all the cases of the property test (each case opens its own
/// accounts), made once per process.
async fn shared_pool() -> PgPool {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(url) = URL.get() {
        return sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .expect("pool");
    }
    let database = paykit::testing::fresh_database().await;
    let pool = database.pool().expect("pool");
    orchestrator::startup::migrate(&pool)
        .await
        .expect("migrations apply");
    use secrecy::ExposeSecret;
    let _ = URL.set(database.url.expose_secret().to_string());
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_spending_one_wallet_never_overdraw_it_and_exactly_the_affordable_payments_succeed(
) {
    let pool = ledger_pool().await;
    let sagas = Sagas::new(pool.clone(), SagaSettings::default());
    let wallet = open(&pool, AccountKind::Wallet).await;
    let merchant = open(&pool, AccountKind::Merchant).await;
    sagas
        .start(
            "test",
            "fund",
            Request::TopUp {
                wallet_account_id: wallet,
                amount: jpy(1_000),
            },
        )
        .await
        .expect("top-up");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let sagas = sagas.clone();
            tokio::spawn(async move {
                sagas
                    .start(
                        "test",
                        &format!("spend-{i}"),
                        Request::Payment {
                            wallet_account_id: wallet,
                            merchant_account_id: merchant,
                            amount: jpy(30),
                            fee_bps: 0,
                            reference: None,
                            metadata: None,
                        },
                    )
                    .await
                    .expect("the payment is answered")
                    .state
            })
        })
        .collect();
    let mut completed = 0;
    let mut declined = 0;
    for task in tasks {
        match task.await.expect("task").as_str() {
            "completed" => completed += 1,
            "declined" => declined += 1,
            other => panic!("unexpected state {other}"),
        }
    }
    assert_eq!(
        (completed, declined),
        (33, 7),
        "1000 affords exactly 33 payments of 30"
    );
    assert_eq!(available(&pool, wallet).await, 10);
    assert_invariants(&pool, "after the contention").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_to_one_hot_merchant_all_land_across_its_balance_buckets() {
    let pool = ledger_pool().await;
    let sagas = Sagas::new(pool.clone(), SagaSettings::default());
    let merchant = open(&pool, AccountKind::Merchant).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let wallet = open(&pool, AccountKind::Wallet).await;
        sagas
            .start(
                "test",
                &format!("fund-{i}"),
                Request::TopUp {
                    wallet_account_id: wallet,
                    amount: jpy(100),
                },
            )
            .await
            .expect("top-up");
        let sagas = sagas.clone();
        tasks.push(tokio::spawn(async move {
            sagas
                .start(
                    "test",
                    &format!("pay-{i}"),
                    Request::Payment {
                        wallet_account_id: wallet,
                        merchant_account_id: merchant,
                        amount: jpy(100),
                        fee_bps: 100,
                        reference: None,
                        metadata: None,
                    },
                )
                .await
                .expect("answered")
                .state
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), "completed");
    }
    let mut connection = pool.acquire().await.expect("connection");
    // 24 × (100 − 1 fee) = 2376, whichever buckets the payments landed in.
    assert_eq!(
        ledger::balance(&mut connection, merchant)
            .await
            .expect("balance")
            .posted(),
        2_376
    );
    let buckets_used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM account_balances WHERE account_id = $1 AND credits_posted > 0",
    )
    .bind(merchant)
    .fetch_one(&pool)
    .await
    .expect("count");
    assert!(
        buckets_used > 1,
        "the merchant's balance is spread over its buckets"
    );
    assert_invariants(&pool, "after the hot merchant").await;
}

#[tokio::test]
async fn a_reservation_that_times_out_voids_itself_and_can_no_longer_be_posted() {
    let pool = ledger_pool().await;
    let wallet = open(&pool, AccountKind::Wallet).await;
    let merchant = open(&pool, AccountKind::Merchant).await;
    let funding = ledger::system_account(
        &pool,
        AccountKind::Funding,
        Currency::parse("JPY").expect("code"),
    )
    .await
    .expect("funding");
    let jpy_code = Currency::parse("JPY").expect("code");
    let posted = |id, debit, credit, amount| NewTransfer {
        id,
        debit,
        credit,
        amount,
        currency: jpy_code,
        kind: TransferKind::Posted,
        code: "top_up",
        saga_id: None,
    };
    ledger::apply(&pool, &[posted(Uuid::new_v4(), funding.id, wallet, 500)])
        .await
        .expect("funded");
    let reserve_id = Uuid::new_v4();
    let reserve = NewTransfer {
        kind: TransferKind::Pending {
            timeout_ms: Some(20),
        },
        code: "payment_reserve",
        ..posted(reserve_id, wallet, merchant, 400)
    };
    ledger::apply(&pool, &[reserve]).await.expect("reserved");
    assert_eq!(available(&pool, wallet).await, 100);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let post = NewTransfer {
        kind: TransferKind::PostPending {
            pending_id: reserve_id,
            amount: None,
        },
        code: "payment",
        ..posted(Uuid::new_v4(), Uuid::nil(), Uuid::nil(), 0)
    };
    assert!(matches!(
        ledger::apply(&pool, std::slice::from_ref(&post)).await,
        Err(LedgerError::PendingExpired(_))
    ));
    assert_eq!(ledger::expire_pending(&pool, 10).await.expect("expiry"), 1);
    assert_eq!(
        available(&pool, wallet).await,
        500,
        "the reservation is released"
    );
    assert!(matches!(
        ledger::apply(&pool, &[post]).await,
        Err(LedgerError::PendingAlreadyResolved(..))
    ));
    assert_invariants(&pool, "after expiry").await;
}

#[tokio::test]
async fn a_reused_transfer_id_replays_the_same_transfer_and_refuses_a_different_one() {
    let pool = ledger_pool().await;
    let wallet = open(&pool, AccountKind::Wallet).await;
    let funding = ledger::system_account(
        &pool,
        AccountKind::Funding,
        Currency::parse("JPY").expect("code"),
    )
    .await
    .expect("funding");
    let id = Uuid::new_v4();
    let transfer = NewTransfer {
        id,
        debit: funding.id,
        credit: wallet,
        amount: 700,
        currency: Currency::parse("JPY").expect("code"),
        kind: TransferKind::Posted,
        code: "top_up",
        saga_id: None,
    };
    assert!(matches!(
        ledger::apply(&pool, std::slice::from_ref(&transfer))
            .await
            .expect("applied")[0],
        ledger::Applied::Created(_)
    ));
    assert!(matches!(
        ledger::apply(&pool, std::slice::from_ref(&transfer))
            .await
            .expect("replayed")[0],
        ledger::Applied::Exists(_)
    ));
    let different = NewTransfer {
        amount: 701,
        ..transfer
    };
    assert!(matches!(
        ledger::apply(&pool, &[different]).await,
        Err(LedgerError::ExistsWithDifferentContent(_))
    ));
    assert_eq!(available(&pool, wallet).await, 700, "applied once");
    assert_invariants(&pool, "after the reuse").await;
}

#[tokio::test]
async fn a_linked_batch_applies_all_or_nothing() {
    let pool = ledger_pool().await;
    let wallet = open(&pool, AccountKind::Wallet).await;
    let other = open(&pool, AccountKind::Wallet).await;
    let funding = ledger::system_account(
        &pool,
        AccountKind::Funding,
        Currency::parse("JPY").expect("code"),
    )
    .await
    .expect("funding");
    let jpy_code = Currency::parse("JPY").expect("code");
    let t = |debit, credit, amount| NewTransfer {
        id: Uuid::new_v4(),
        debit,
        credit,
        amount,
        currency: jpy_code,
        kind: TransferKind::Posted,
        code: "p2p",
        saga_id: None,
    };
    ledger::apply(&pool, &[t(funding.id, wallet, 100)])
        .await
        .expect("funded");
    // The second transfer overdraws: the first, valid on its own, must not stay.
    let result = ledger::apply(&pool, &[t(wallet, other, 60), t(wallet, other, 60)]).await;
    assert!(
        matches!(result, Err(LedgerError::InsufficientFunds { .. })),
        "{result:?}"
    );
    assert_eq!(available(&pool, wallet).await, 100);
    assert_eq!(available(&pool, other).await, 0);
    assert_invariants(&pool, "after the failed batch").await;
}

/// What a ledger holds, compared across databases: each account's four balances (its buckets
/// summed), every posted movement of money, and each saga's outcome in the order it started.
#[derive(Debug, PartialEq)]
struct Holdings {
    balances: Vec<(Uuid, i64, i64, i64, i64)>,
    movements: Vec<(String, Uuid, Uuid, i64)>,
    sagas: Vec<SagaOutcome>,
    events: Vec<String>,
}

/// A saga's kind, state, amount, fee, captured and refunded amounts, and why it failed.
type SagaOutcome = (String, String, i64, i64, i64, i64, Option<String>);

async fn holdings(pool: &PgPool) -> Holdings {
    let balances = sqlx::query_as(
        "SELECT account_id, sum(debits_pending)::int8, sum(debits_posted)::int8, sum(credits_pending)::int8, sum(credits_posted)::int8
         FROM account_balances GROUP BY account_id ORDER BY account_id",
    )
    .fetch_all(pool)
    .await
    .expect("balances");
    let movements = sqlx::query_as(
        "SELECT code, debit_account_id, credit_account_id, amount FROM transfers
         WHERE kind IN ('posted', 'post_pending') ORDER BY code, debit_account_id, credit_account_id, amount",
    )
    .fetch_all(pool)
    .await
    .expect("movements");
    let sagas = sqlx::query_as(
        "SELECT kind, state, amount, fee, captured_amount, refunded_amount, failure_type FROM sagas ORDER BY created_at, idempotency_key",
    )
    .fetch_all(pool)
    .await
    .expect("sagas");
    let events = sqlx::query_scalar(
        "SELECT topic || ' ' || key || ' ' || (envelope->>'type') FROM outbox ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .expect("events");
    Holdings {
        balances,
        movements,
        sagas,
        events,
    }
}

/// The same requests, in the same order, on a fresh database with payments in one commit or
/// step by step; returns what the ledger holds afterwards.
async fn run_the_same_requests(single_commit: bool) -> Holdings {
    let pool = ledger_pool().await;
    let sagas = Sagas::new(
        pool.clone(),
        SagaSettings {
            single_commit,
            ..SagaSettings::default()
        },
    );
    let jpy_code = Currency::parse("JPY").expect("code");
    let id = |n: u128| Uuid::from_u128(0x5eed_0000 + n);
    let (rich, poor, shop, cafe) = (id(1), id(2), id(3), id(4));
    for (account, kind) in [
        (rich, AccountKind::Wallet),
        (poor, AccountKind::Wallet),
        (shop, AccountKind::Merchant),
        (cafe, AccountKind::Merchant),
    ] {
        ledger::create_account(&pool, account, kind, jpy_code, None)
            .await
            .expect("account");
    }
    let top_up = |wallet, value| Request::TopUp {
        wallet_account_id: wallet,
        amount: jpy(value),
    };
    let pay = |wallet, merchant, value, fee_bps| Request::Payment {
        wallet_account_id: wallet,
        merchant_account_id: merchant,
        amount: jpy(value),
        fee_bps,
        reference: Some(format!("order {value}")),
        metadata: Some(serde_json::json!({ "channel": "qr" })),
    };
    let mut first_payment = None;
    for (key, request) in [
        ("fund-rich", top_up(rich, 10_000)),
        ("fund-poor", top_up(poor, 500)),
        ("a", pay(rich, shop, 3_000, 250)),
        ("b", pay(rich, cafe, 1_234, 0)),
        ("c", pay(poor, shop, 800, 250)),
        ("d", pay(rich, shop, 2_000, 99)),
        ("a", pay(rich, shop, 3_000, 250)),
        ("e", pay(poor, cafe, 500, 1_000)),
    ] {
        let view = sagas.start("test", key, request).await.expect("answered");
        if key == "a" && first_payment.is_none() {
            first_payment = Some(view.id);
        }
    }
    let payment_id = first_payment.expect("payment a");
    sagas
        .start(
            "test",
            "refund-a",
            Request::Refund {
                payment_id,
                amount: jpy(1_000),
            },
        )
        .await
        .expect("refund");
    assert_invariants(&pool, &format!("single commit: {single_commit}")).await;
    holdings(&pool).await
}

#[tokio::test]
async fn payments_in_one_commit_and_step_by_step_leave_identical_ledgers() {
    let at_once = run_the_same_requests(true).await;
    let step_by_step = run_the_same_requests(false).await;
    assert_eq!(
        at_once.sagas.iter().filter(|s| s.1 == "declined").count(),
        1,
        "the poor wallet's first payment was declined: {:?}",
        at_once.sagas
    );
    assert_eq!(at_once, step_by_step);
}

#[tokio::test]
async fn a_replay_answers_the_stored_outcome_even_when_planning_it_again_would_be_refused() {
    let pool = ledger_pool().await;
    let sagas = Sagas::new(pool.clone(), SagaSettings::default());
    let wallet = open(&pool, AccountKind::Wallet).await;
    let merchant = open(&pool, AccountKind::Merchant).await;
    let fund = Request::TopUp {
        wallet_account_id: wallet,
        amount: jpy(1_000),
    };
    sagas.start("test", "fund", fund).await.expect("funded");
    let pay = Request::Payment {
        wallet_account_id: wallet,
        merchant_account_id: merchant,
        amount: jpy(400),
        fee_bps: 0,
        reference: None,
        metadata: None,
    };
    let first = sagas.start("test", "pay", pay.clone()).await.expect("paid");
    assert_eq!(first.state, "completed");
    sqlx::query("UPDATE accounts SET closed = true WHERE id = $1")
        .bind(merchant)
        .execute(&pool)
        .await
        .expect("merchant closed");
    let replay = sagas
        .start("test", "pay", pay.clone())
        .await
        .expect("replayed");
    assert!(replay.replayed, "the stored outcome, not a refusal");
    assert_eq!((replay.id, replay.state), (first.id, first.state));
    let refused = sagas.start("test", "pay-again", pay).await;
    assert!(
        matches!(
            refused,
            Err(orchestrator::saga::SagaError::Ledger(
                LedgerError::AccountClosed(_)
            ))
        ),
        "a new key to the closed merchant is refused: {refused:?}"
    );
    assert_eq!(available(&pool, wallet).await, 600, "charged once");
}

/// Waits (at most 20 s) until `writers` sessions wait for a lock on the sagas table.
async fn writers_waiting_on_sagas(pool: &PgPool, writers: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_locks
             WHERE relation = 'sagas'::regclass AND NOT granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(pool)
        .await
        .expect("locks");
        if waiting >= writers {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} of {writers} group writers waited on the sagas table within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The same concurrent payments on a fresh database, written in groups (`group_max`) or one
/// commit each: what the ledger holds afterwards (order aside, as concurrency decides it), and
/// how many distinct commit times the completed payments have (a group's rows share its
/// transaction's `now()`).
async fn pay_concurrently(group_max: usize) -> (Holdings, usize, usize) {
    let pool = ledger_pool().await;
    let sagas = Sagas::new(
        pool.clone(),
        SagaSettings {
            group_max,
            ..SagaSettings::default()
        },
    );
    let jpy_code = Currency::parse("JPY").expect("code");
    let id = |n: u128| Uuid::from_u128(0x9a0b_0000 + n);
    let wallets: Vec<Uuid> = (0..12).map(id).collect();
    let poor = id(50);
    let merchants: Vec<Uuid> = (60..63).map(id).collect();
    for account in wallets.iter().chain([&poor]) {
        ledger::create_account(&pool, *account, AccountKind::Wallet, jpy_code, None)
            .await
            .expect("wallet");
    }
    for merchant in &merchants {
        ledger::create_account(&pool, *merchant, AccountKind::Merchant, jpy_code, None)
            .await
            .expect("merchant");
    }
    for (n, wallet) in wallets.iter().chain([&poor]).enumerate() {
        let value = if *wallet == poor { 100 } else { 10_000 };
        let fund = Request::TopUp {
            wallet_account_id: *wallet,
            amount: jpy(value),
        };
        sagas
            .start("test", &format!("fund-{n}"), fund)
            .await
            .expect("funded");
    }
    let pay = |wallet: Uuid, merchant: Uuid, value: i64| Request::Payment {
        wallet_account_id: wallet,
        merchant_account_id: merchant,
        amount: jpy(value),
        fee_bps: 250,
        reference: None,
        metadata: None,
    };
    let mut requests: Vec<(String, Request)> = Vec::new();
    for round in 0..4 {
        for (n, wallet) in wallets.iter().enumerate() {
            let merchant = merchants[(n + round) % merchants.len()];
            let value = 100 + i64::try_from(n).expect("small") * 10 + round as i64;
            requests.push((format!("pay-{round}-{n}"), pay(*wallet, merchant, value)));
        }
    }
    // The poor wallet affords one of these three: two are declined, whichever they are.
    for n in 0..3 {
        requests.push((format!("poor-{n}"), pay(poor, merchants[0], 60)));
    }
    // One request sent three times at once: one payment.
    for _ in 0..3 {
        requests.push(("twice-more".into(), pay(wallets[0], merchants[1], 777)));
    }
    // Grouped, the sagas table is locked against writes until both group writers wait on it:
    // the rest of the requests then queue up behind them and make a group whatever this
    // machine's speed (sent freely, a fast machine may write each alone as it arrives, or
    // put a decline in every group).
    let mut gate = pool.begin().await.expect("gate");
    if group_max > 1 {
        sqlx::query("LOCK TABLE sagas IN SHARE MODE")
            .execute(&mut *gate)
            .await
            .expect("locked");
    }
    let mut running = tokio::task::JoinSet::new();
    for (key, request) in requests {
        let sagas = sagas.clone();
        running.spawn(async move { sagas.start("test", &key, request).await });
    }
    if group_max > 1 {
        writers_waiting_on_sagas(&pool, 2).await;
        // The requests still being planned (a few reads each) join the queue meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    gate.commit().await.expect("gate opened");
    while let Some(answer) = running.join_next().await {
        answer.expect("joined").expect("answered");
    }
    assert_invariants(&pool, &format!("group_max {group_max}")).await;
    let (completed, commit_times): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT created_at) FROM sagas
         WHERE kind = 'payment' AND state = 'completed'",
    )
    .fetch_one(&pool)
    .await
    .expect("commit times");
    let mut held = holdings(&pool).await;
    held.sagas.sort();
    held.events.sort();
    (
        held,
        usize::try_from(completed).expect("count"),
        usize::try_from(commit_times).expect("count"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_written_in_groups_and_one_commit_each_leave_the_same_ledger() {
    let (grouped, completed, commit_times) = pay_concurrently(32).await;
    let (alone, completed_alone, commit_times_alone) = pay_concurrently(1).await;
    // 48 payments, the poor wallet's one, the one sent three times.
    assert_eq!(completed, 48 + 1 + 1);
    assert_eq!(completed_alone, completed);
    assert_eq!(
        grouped.sagas.iter().filter(|s| s.1 == "declined").count(),
        2,
        "{:?}",
        grouped.sagas
    );
    assert_eq!(grouped, alone);
    assert!(
        commit_times < completed,
        "some payments shared a commit: {commit_times} commit times for {completed} payments"
    );
    assert_eq!(commit_times_alone, completed_alone, "one commit each");
}
