-- Who charged a code, and under which key: a retry of that charge finds its own redemption
-- again, any other charge of the same code is refused.
ALTER TABLE payment_codes
    ADD COLUMN redeemed_key text,
    ADD COLUMN redeemed_by_merchant uuid,
    ADD CONSTRAINT payment_codes_redemption_complete
        CHECK ((redeemed_at IS NULL) = (redeemed_key IS NULL));

-- Payments the consumer made by scanning a merchant's QR code; the id is the orchestrator's
-- saga id, so a replayed request lands on the same row.
CREATE TABLE payments (
    id                  uuid        PRIMARY KEY,
    consumer_id         uuid        NOT NULL REFERENCES consumers (id),
    merchant_id         uuid        NOT NULL,
    merchant_name       text        NOT NULL,
    payment_request_id  uuid        NOT NULL,
    amount_value        bigint      NOT NULL CHECK (amount_value > 0),
    currency            char(3)     NOT NULL,
    reference           text,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_by_consumer ON payments (consumer_id, created_at DESC);

-- What the sender wrote with a transfer ("dinner on Friday"), by the orchestrator's transfer id.
CREATE TABLE transfer_notes (
    transfer_id  uuid        PRIMARY KEY,
    consumer_id  uuid        NOT NULL REFERENCES consumers (id),
    note         text        NOT NULL CHECK (char_length(note) BETWEEN 1 AND 140),
    created_at   timestamptz NOT NULL DEFAULT now()
);
