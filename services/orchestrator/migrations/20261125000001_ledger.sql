-- The double-entry ledger, after TigerBeetle's data model: accounts with flags and four balance
-- columns, immutable transfers with client-supplied ids, pending transfers that are posted or
-- voided exactly once. Money is bigint minor units; every amount is in one currency (a ledger).

CREATE TABLE currencies (
    code         char(3)  PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    numeric_code smallint NOT NULL UNIQUE CHECK (numeric_code BETWEEN 1 AND 999),
    exponent     smallint NOT NULL CHECK (exponent BETWEEN 0 AND 4)
);

-- ISO 4217 currencies this platform settles in (code, numeric, minor-unit exponent).
INSERT INTO currencies (code, numeric_code, exponent) VALUES
    ('JPY', 392, 0), ('USD', 840, 2), ('EUR', 978, 2), ('GBP', 826, 2), ('SGD', 702, 2),
    ('THB', 764, 2), ('INR', 356, 2), ('IDR', 360, 2), ('MYR', 458, 2), ('PHP', 608, 2),
    ('VND', 704, 0), ('KRW', 410, 0), ('CNY', 156, 2), ('HKD', 344, 2), ('AUD', 36, 2),
    ('CHF', 756, 2), ('BHD', 48, 3), ('KWD', 414, 3);

CREATE TABLE accounts (
    id          uuid        PRIMARY KEY,
    currency    char(3)     NOT NULL REFERENCES currencies (code),
    kind        text        NOT NULL CHECK (kind IN ('wallet', 'merchant', 'funding', 'fees', 'suspense')),
    -- TigerBeetle's account flags: a wallet cannot spend more than it holds.
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
    credits_must_not_exceed_debits boolean NOT NULL DEFAULT false,
    -- How many balance rows the account's balance is spread over (hot accounts: see below).
    balance_buckets smallint NOT NULL DEFAULT 1 CHECK (balance_buckets BETWEEN 1 AND 64),
    owner_ref   text        CHECK (char_length(owner_ref) <= 200),
    closed      boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A limited account's balance must live in one row, or no single row can check the limit.
    CONSTRAINT accounts_limited_accounts_have_one_bucket CHECK (
        NOT (debits_must_not_exceed_credits OR credits_must_not_exceed_debits) OR balance_buckets = 1
    ),
    CONSTRAINT accounts_flags_exclusive CHECK (
        NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)
    )
);

-- One platform account per kind and currency for the system's own accounts.
CREATE UNIQUE INDEX accounts_one_system_account_per_currency
    ON accounts (kind, currency) WHERE kind IN ('funding', 'fees', 'suspense');

-- Balances, spread over `balance_buckets` rows per account. A merchant receiving most
-- payments would otherwise serialize every payment on one row lock; each transfer updates the
-- bucket its id hashes to, and the balance is the sum of the buckets, exact at every commit.
CREATE TABLE account_balances (
    account_id      uuid     NOT NULL REFERENCES accounts (id),
    bucket          smallint NOT NULL CHECK (bucket >= 0),
    debits_pending  bigint   NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted   bigint   NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending bigint   NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted  bigint   NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    limit_flag_debits  boolean NOT NULL DEFAULT false,
    limit_flag_credits boolean NOT NULL DEFAULT false,
    PRIMARY KEY (account_id, bucket),
    -- The limit, enforced by the database itself on every update: a wallet never goes negative.
    CONSTRAINT balances_debits_must_not_exceed_credits CHECK (
        NOT limit_flag_debits OR debits_pending + debits_posted <= credits_posted
    ),
    CONSTRAINT balances_credits_must_not_exceed_debits CHECK (
        NOT limit_flag_credits OR credits_pending + credits_posted <= debits_posted
    )
);

-- Transfers are immutable. `kind` follows TigerBeetle's flags: a posted transfer, a pending one
-- (a reservation), or the post/void that resolves a pending one.
CREATE TABLE transfers (
    id                uuid        PRIMARY KEY,
    debit_account_id  uuid        NOT NULL REFERENCES accounts (id),
    credit_account_id uuid        NOT NULL REFERENCES accounts (id),
    amount            bigint      NOT NULL CHECK (amount > 0),
    currency          char(3)     NOT NULL REFERENCES currencies (code),
    kind              text        NOT NULL CHECK (kind IN ('posted', 'pending', 'post_pending', 'void_pending')),
    pending_id        uuid        REFERENCES transfers (id),
    timeout_at        timestamptz,
    code              text        NOT NULL CHECK (code ~ '^[a-z0-9_]{1,32}$'),
    saga_id           uuid,
    -- Transfers applied together in one batch (linked: all or none) share it.
    batch_id          uuid        NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Ordering for history pages: strictly increasing per commit order is not needed, only unique.
    seq               bigserial   NOT NULL UNIQUE,
    CONSTRAINT transfers_accounts_differ CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_resolution_names_pending CHECK (
        (kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL)
    ),
    CONSTRAINT transfers_timeout_only_on_pending CHECK (kind = 'pending' OR timeout_at IS NULL)
);

-- A pending transfer is posted or voided at most once.
CREATE UNIQUE INDEX transfers_pending_resolved_once ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_debit_history ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit_history ON transfers (credit_account_id, seq);
CREATE INDEX transfers_open_pending_timeouts ON transfers (timeout_at) WHERE kind = 'pending' AND timeout_at IS NOT NULL;
