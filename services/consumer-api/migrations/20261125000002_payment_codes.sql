-- One-time payment codes a consumer shows at a till (consumer-presented mode). Only a hash of
-- each code is kept: a copy of this table does not reveal codes that could still be charged.
CREATE TABLE payment_codes (
    code_sha256       text        PRIMARY KEY,
    consumer_id       uuid        NOT NULL REFERENCES consumers (id),
    wallet_account_id uuid        NOT NULL,
    currency          char(3)     NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    redeemed_at       timestamptz,
    CONSTRAINT payment_codes_expire_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX payment_codes_expiry ON payment_codes (expires_at);
