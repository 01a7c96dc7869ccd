-- paykit's transactional outbox (events a service publishes, written in the transaction that
-- made them) and inbox (events a consumer has applied, so that a redelivery changes nothing).
-- Every service's database gets these through paykit::db::migrate. `IF NOT EXISTS` throughout:
-- databases made before this migration existed got the same tables from paykit at run time.

CREATE TABLE IF NOT EXISTS outbox (
    seq           bigserial   PRIMARY KEY,
    id            uuid        NOT NULL UNIQUE,
    topic         text        NOT NULL,
    key           text        NOT NULL,
    envelope      jsonb       NOT NULL,
    traceparent   text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);

-- What the relay scans: events not published yet.
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (seq) WHERE published_at IS NULL;

-- The relay listens on `outbox` and wakes at once instead of waiting for its next poll.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('outbox', ''); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE IF NOT EXISTS inbox (
    consumer      text        NOT NULL,
    event_id      uuid        NOT NULL,
    outcome       text        NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'dead-lettered')),
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
