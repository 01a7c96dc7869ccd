-- paykit's idempotency store: one row per (caller, endpoint, Idempotency-Key), holding the
-- first answer to replay. `status` is NULL while the first request is in flight; its lease
-- (`locked_until`) frees the key of a request that died. `IF NOT EXISTS`: databases made
-- before this migration existed got the same table from paykit at run time.

CREATE TABLE IF NOT EXISTS idempotency_keys (
    principal     text        NOT NULL,
    endpoint      text        NOT NULL,
    key           text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash  text        NOT NULL,
    status        smallint,
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz NOT NULL,
    PRIMARY KEY (principal, endpoint, key)
);

-- What the purge scans: keys past their retention.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
