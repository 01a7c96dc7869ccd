-- paykit's browser sign-in: logins in progress (the PKCE verifier of an authorization request,
-- by its `state`) and sessions (by the hash of the cookie's id, never the id itself). `IF NOT
-- EXISTS`: databases made before this migration existed got the same tables from paykit at run
-- time.

CREATE TABLE IF NOT EXISTS web_logins (
    state       text        PRIMARY KEY,
    verifier    text        NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash            text        PRIMARY KEY,
    subject            text        NOT NULL,
    name               text,
    email              text,
    access_token       text        NOT NULL,
    refresh_token      text,
    id_token           text,
    access_expires_at  timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    csrf_token         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

-- What the purge scans: sessions past their end.
CREATE INDEX IF NOT EXISTS web_sessions_expires_at ON web_sessions (expires_at);
