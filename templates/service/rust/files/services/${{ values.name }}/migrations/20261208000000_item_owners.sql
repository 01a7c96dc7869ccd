-- Template version 2: each item belongs to the caller who made it (the token's subject).
-- Items made before (version 1 had no callers) belong to no one and are listed to no one.
ALTER TABLE items ADD COLUMN owner text NOT NULL DEFAULT ''
    CONSTRAINT items_owner_length CHECK (char_length(owner) <= 255);
ALTER TABLE items ALTER COLUMN owner DROP DEFAULT;
CREATE INDEX items_owner_newest ON items (owner, id DESC);
