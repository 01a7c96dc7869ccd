-- Consumers: the person behind a Keycloak user, and the wallet the orchestrator keeps for them.
CREATE TABLE consumers (
    id                uuid        PRIMARY KEY,
    keycloak_user_id  text        NOT NULL,
    email             text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    name              text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    wallet_account_id uuid        NOT NULL,
    currency          char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consumers_keycloak_user_unique UNIQUE (keycloak_user_id),
    CONSTRAINT consumers_wallet_unique UNIQUE (wallet_account_id)
);
-- Emails compare case-insensitively: Alice@x and alice@x are one person.
CREATE UNIQUE INDEX consumers_email_unique ON consumers (lower(email));
