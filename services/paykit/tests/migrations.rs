//! paykit's tables come from migrations; databases made before that (when paykit created the
//! same tables at run time) must migrate as they are, rows and all.

#[tokio::test]
async fn a_database_whose_tables_paykit_made_at_run_time_migrates_and_keeps_its_rows() {
    let pool = paykit::testing::fresh_database()
        .await
        .pool()
        .expect("pool");
    // What the run-time code made, before any migration ran.
    for statement in [
        "CREATE TABLE outbox (seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE, topic text NOT NULL,
             key text NOT NULL, envelope jsonb NOT NULL, traceparent text NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz)",
        "CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL",
        "CREATE TABLE inbox (consumer text NOT NULL, event_id uuid NOT NULL,
             outcome text NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'dead-lettered')),
             processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id))",
        "CREATE TABLE idempotency_keys (principal text NOT NULL, endpoint text NOT NULL,
             key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255), request_hash text NOT NULL,
             status smallint, content_type text, body bytea, created_at timestamptz NOT NULL DEFAULT now(),
             locked_until timestamptz NOT NULL, PRIMARY KEY (principal, endpoint, key))",
        "INSERT INTO idempotency_keys (principal, endpoint, key, request_hash, locked_until)
             VALUES ('someone', 'POST /v1/charges', 'k-1', 'h', now())",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect("the old schema");
    }

    paykit::db::PAYKIT_MIGRATIONS
        .run(&pool)
        .await
        .expect("the old database migrates");

    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        kept, 1,
        "the keys stored before the migration are still there"
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM web_sessions")
        .fetch_one(&pool)
        .await
        .expect("the tables the old database lacked are made");
    assert_eq!(sessions, 0);
    // A second run finds everything applied.
    paykit::db::PAYKIT_MIGRATIONS
        .run(&pool)
        .await
        .expect("migrating again changes nothing");
}
