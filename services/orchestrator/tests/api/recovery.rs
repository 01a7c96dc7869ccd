//! Crash recovery: the real orchestrator binary is aborted right after a saga step commits,
//! then started again; every saga completes (or compensates) exactly once.

use orchestrator::invariants;
use orchestrator::ledger::{self, AccountKind};
use orchestrator::saga::{Request, SagaSettings, Sagas};
use paykit::money::{Currency, Money};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_orchestrator");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

struct Orchestrator {
    child: Child,
    address: String,
}

impl Orchestrator {
    async fn start(database_url: &str, failpoint: Option<&str>) -> Self {
        let port = free_port();
        let auth = paykit::testing::auth_settings("orchestrator");
        let mut command = Command::new(BINARY);
        command
            .env("APP_CONFIG_DIR", "/nonexistent")
            .env("APP__HTTP__PORT", port.to_string())
            .env("APP__DATABASE__URL", database_url)
            .env("APP__AUTH__ISSUER", &auth.issuer)
            .env("APP__AUTH__JWKS_URL", &auth.jwks_url)
            .env("APP__AUTH__AUDIENCE", &auth.audience)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(failpoint) = failpoint {
            command.env("APP__SAGA__FAILPOINT", failpoint);
        }
        let child = command.spawn().expect("the orchestrator starts");
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{address}/health/ready")).send().await {
                if response.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the orchestrator did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, address }
    }

    fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the failpoint did not stop the process"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jpy(value: i64) -> Money {
    Money::new(value, Currency::parse("JPY").expect("code"))
}

async fn saga_state(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT state FROM sagas WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("saga")
}

async fn count_transfers(pool: &PgPool, saga: Uuid, code: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM transfers WHERE saga_id = $1 AND code = $2")
        .bind(saga)
        .bind(code)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Runs one payment into a failpoint, restarts, and returns (pool, saga id, wallet, merchant).
async fn crash_after(state: &str, close_merchant: bool) -> (PgPool, Uuid, Uuid) {
    let database = paykit::testing::fresh_database().await;
    let pool = database.pool().expect("pool");
    orchestrator::startup::migrate(&pool)
        .await
        .expect("migrations");
    let currency = Currency::parse("JPY").expect("code");
    let wallet = Uuid::new_v4();
    let merchant = Uuid::new_v4();
    ledger::create_account(&pool, wallet, AccountKind::Wallet, currency, None)
        .await
        .expect("wallet");
    ledger::create_account(&pool, merchant, AccountKind::Merchant, currency, None)
        .await
        .expect("merchant");
    Sagas::new(pool.clone(), SagaSettings::default())
        .start(
            "setup",
            "fund",
            Request::TopUp {
                wallet_account_id: wallet,
                amount: jpy(10_000),
            },
        )
        .await
        .expect("funded");

    let url = database.url.expose_secret().to_string();
    let token = paykit::testing::client_token("consumer-api").await;
    let body = json!({ "wallet_account_id": wallet, "merchant_account_id": merchant, "amount": { "value": 2_000, "currency": "JPY" }, "fee_bps": 300 });
    let mut crashing = Orchestrator::start(&url, Some(&format!("after:{state}"))).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/payments", crashing.address))
        .bearer_auth(&token)
        .header("Idempotency-Key", "crash-me")
        .json(&body)
        .send()
        .await;
    assert!(
        answer.is_err(),
        "the process died mid-request, so the client got no answer"
    );
    assert!(
        !crashing.wait_for_exit().success(),
        "the failpoint aborted the process"
    );
    let saga: Uuid = sqlx::query_scalar("SELECT id FROM sagas WHERE idempotency_key = 'crash-me'")
        .fetch_one(&pool)
        .await
        .expect("the saga was persisted");
    assert_eq!(
        saga_state(&pool, saga).await,
        state,
        "the crash left the saga where the failpoint was"
    );
    if close_merchant {
        sqlx::query("UPDATE accounts SET closed = true WHERE id = $1")
            .bind(merchant)
            .execute(&pool)
            .await
            .expect("close");
    }

    let restarted = Orchestrator::start(&url, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !["completed", "voided"].contains(&saga_state(&pool, saga).await.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the recovery worker did not finish the saga (state {})",
            saga_state(&pool, saga).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client retries with its key after the timeout: it gets the outcome, not a new charge.
    let retry = reqwest::Client::new()
        .post(format!("{}/v1/payments", restarted.address))
        .bearer_auth(&token)
        .header("Idempotency-Key", "crash-me")
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(retry.headers()["idempotency-replayed"], "true");
    let retry: Value = retry.json().await.expect("json");
    if !close_merchant {
        assert_eq!(retry["id"], saga.to_string());
    }
    let report = invariants::verify(&pool).await.expect("verify");
    assert!(
        report.ok,
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    (pool, saga, wallet)
}

async fn wallet_available(pool: &PgPool, wallet: Uuid) -> i64 {
    let mut connection = pool.acquire().await.expect("connection");
    ledger::balance(&mut connection, wallet)
        .await
        .expect("balance")
        .available()
}

#[tokio::test]
async fn a_payment_interrupted_after_any_step_completes_exactly_once_after_a_restart() {
    for state in ["reserved", "merchant_confirmed", "captured"] {
        let (pool, saga, wallet) = crash_after(state, false).await;
        assert_eq!(
            saga_state(&pool, saga).await,
            "completed",
            "after a crash at {state}"
        );
        assert_eq!(
            count_transfers(&pool, saga, "payment_reserve").await,
            1,
            "{state}: reserved once"
        );
        assert_eq!(
            count_transfers(&pool, saga, "payment").await,
            1,
            "{state}: captured once"
        );
        assert_eq!(
            count_transfers(&pool, saga, "fee").await,
            1,
            "{state}: fee charged once"
        );
        assert_eq!(
            wallet_available(&pool, wallet).await,
            8_000,
            "{state}: the wallet paid once"
        );
    }
}

#[tokio::test]
async fn a_payment_interrupted_before_capture_compensates_exactly_once_when_the_merchant_is_gone() {
    let (pool, saga, wallet) = crash_after("reserved", true).await;
    assert_eq!(saga_state(&pool, saga).await, "voided");
    assert_eq!(
        count_transfers(&pool, saga, "payment_void").await,
        1,
        "voided once"
    );
    assert_eq!(
        count_transfers(&pool, saga, "payment").await,
        0,
        "never captured"
    );
    assert_eq!(
        wallet_available(&pool, wallet).await,
        10_000,
        "the reservation was released"
    );
}
