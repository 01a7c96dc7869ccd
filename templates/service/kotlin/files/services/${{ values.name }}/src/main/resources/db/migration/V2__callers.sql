-- Template version 2: each item belongs to the caller who made it (the token's subject), and a
-- POST's Idempotency-Key is kept with its answer. Items made before (version 1 had no callers)
-- belong to no one and are listed to no one.
ALTER TABLE items ADD COLUMN owner text NOT NULL DEFAULT ''
    CONSTRAINT items_owner_length CHECK (char_length(owner) <= 255);
ALTER TABLE items ALTER COLUMN owner DROP DEFAULT;
CREATE INDEX items_owner_newest ON items (owner, seq DESC);

CREATE TABLE idempotency_keys (
    owner          text NOT NULL,
    endpoint       text NOT NULL,
    key            text NOT NULL CONSTRAINT idempotency_keys_key_length CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash   text NOT NULL,
    -- Set in the transaction that claimed the key, so a committed row always has it.
    response_body  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, endpoint, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
