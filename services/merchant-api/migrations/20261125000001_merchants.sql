-- Merchants: the business behind a Keycloak user, and the account the ledger keeps for it.
-- Name, city, country, MCC and currency are what its QR codes carry (EMVCo fields 59, 60, 58,
-- 52, 53), so they are held to those fields' limits here as well.
CREATE TABLE merchants (
    id                  uuid        PRIMARY KEY,
    keycloak_user_id    text        NOT NULL,
    email               text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    name                text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 25),
    city                text        NOT NULL CHECK (char_length(city) BETWEEN 1 AND 15),
    country             char(2)     NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    mcc                 char(4)     NOT NULL CHECK (mcc ~ '^[0-9]{4}$'),
    currency            char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    ledger_account_id   uuid        NOT NULL,
    -- The last event id handed out for this merchant. Taking the next one locks this row until
    -- the event's transaction commits, so a merchant's events commit in id order and a reader
    -- resuming after id N can never miss an event that commits later with a smaller id.
    last_event_id       bigint      NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT merchants_keycloak_user_unique UNIQUE (keycloak_user_id),
    CONSTRAINT merchants_ledger_account_unique UNIQUE (ledger_account_id)
);
CREATE UNIQUE INDEX merchants_email_unique ON merchants (lower(email));

-- What a merchant asks to be paid: a static QR (reusable, the payer enters the amount) or a
-- dynamic one (an amount, paid once, until it expires).
CREATE TABLE payment_requests (
    id            uuid        PRIMARY KEY,
    merchant_id   uuid        NOT NULL REFERENCES merchants (id),
    kind          text        NOT NULL CHECK (kind IN ('static', 'dynamic')),
    amount_value  bigint      CHECK (amount_value > 0),
    currency      char(3)     NOT NULL,
    reference     text        CHECK (char_length(reference) BETWEEN 1 AND 25),
    payload       text        NOT NULL CHECK (char_length(payload) <= 512),
    status        text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid')),
    expires_at    timestamptz,
    -- The payer's Idempotency-Key while a dynamic request is being paid: a retry of that payer
    -- goes on, anyone else is told it is taken.
    paying_key    text,
    payment_id    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_requests_dynamic_has_amount_and_expiry
        CHECK ((kind = 'dynamic') = (amount_value IS NOT NULL AND expires_at IS NOT NULL)),
    CONSTRAINT payment_requests_paid_has_payment CHECK ((status = 'paid') = (payment_id IS NOT NULL))
);
CREATE INDEX payment_requests_by_merchant ON payment_requests (merchant_id, created_at DESC);

-- The merchant's transactions: payments (by QR or by a consumer's code) and refunds. The id is
-- the orchestrator's saga id, so a replayed write lands on the same row.
CREATE TABLE transactions (
    id                  uuid        PRIMARY KEY,
    merchant_id         uuid        NOT NULL REFERENCES merchants (id),
    kind                text        NOT NULL CHECK (kind IN ('payment', 'refund')),
    status              text        NOT NULL CHECK (status IN ('completed', 'partially_refunded', 'refunded')),
    channel             text        CHECK (channel IN ('qr', 'code')),
    amount_value        bigint      NOT NULL CHECK (amount_value > 0),
    fee_value           bigint      NOT NULL DEFAULT 0 CHECK (fee_value >= 0),
    refunded_value      bigint      NOT NULL DEFAULT 0 CHECK (refunded_value >= 0),
    currency            char(3)     NOT NULL,
    payment_id          uuid        REFERENCES transactions (id),
    payment_request_id  uuid        REFERENCES payment_requests (id),
    reference           text        CHECK (char_length(reference) <= 25),
    payer_ref           text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transactions_refunds_within_amount CHECK (refunded_value <= amount_value),
    CONSTRAINT transactions_refund_names_payment CHECK ((kind = 'refund') = (payment_id IS NOT NULL))
);
CREATE INDEX transactions_page ON transactions (merchant_id, created_at DESC, id DESC);

-- What the merchant's live stream sends, per merchant in id order (see merchants.last_event_id).
CREATE TABLE merchant_events (
    merchant_id  uuid        NOT NULL REFERENCES merchants (id),
    id           bigint      NOT NULL CHECK (id > 0),
    type         text        NOT NULL,
    data         jsonb       NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, id)
);

-- Streams wake on commit instead of polling: the payload is the merchant's id.
CREATE FUNCTION merchant_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('merchant_events', NEW.merchant_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER merchant_events_notify AFTER INSERT ON merchant_events
    FOR EACH ROW EXECUTE FUNCTION merchant_events_notify();
