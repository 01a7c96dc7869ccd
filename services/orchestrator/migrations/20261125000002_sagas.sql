-- Payment sagas as persisted state machines. Every step is one database transaction that
-- applies its ledger transfers (with ids derived from the saga id and the step, so a replayed
-- step finds its own transfer) and moves the state, so a step happens once or not at all.

CREATE TABLE sagas (
    id                uuid        PRIMARY KEY,
    kind              text        NOT NULL CHECK (kind IN ('top_up', 'payment', 'p2p', 'refund')),
    state             text        NOT NULL,
    -- Who asked (the calling client) and its Idempotency-Key: one saga per key per caller.
    caller            text        NOT NULL CHECK (char_length(caller) <= 200),
    idempotency_key   text        NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_hash      text        NOT NULL,
    currency          char(3)     NOT NULL REFERENCES currencies (code),
    amount            bigint      NOT NULL CHECK (amount > 0),
    fee               bigint      NOT NULL DEFAULT 0 CHECK (fee >= 0),
    debit_account_id  uuid        NOT NULL REFERENCES accounts (id),
    credit_account_id uuid        NOT NULL REFERENCES accounts (id),
    -- For a refund: the payment it refunds.
    payment_id        uuid        REFERENCES sagas (id),
    captured_amount   bigint      NOT NULL DEFAULT 0 CHECK (captured_amount >= 0),
    refunded_amount   bigint      NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    reference         text        CHECK (char_length(reference) <= 140),
    failure_type      text,
    failure_detail    text,
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    deadline_at       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sagas_idempotency_key_unique UNIQUE (caller, kind, idempotency_key),
    -- A payment is never refunded beyond what was captured.
    CONSTRAINT sagas_refunds_within_capture CHECK (refunded_amount <= captured_amount),
    CONSTRAINT sagas_fee_within_amount CHECK (fee <= amount)
);

-- What the recovery worker scans: unfinished sagas whose next attempt is due.
CREATE INDEX sagas_unfinished ON sagas (next_attempt_at)
    WHERE state NOT IN ('completed', 'declined', 'voided', 'failed');
CREATE INDEX sagas_refunds_of_payment ON sagas (payment_id) WHERE payment_id IS NOT NULL;
