-- The resource of the template: replace it with the service's own tables (Flyway, V<n>__name.sql).
CREATE TABLE items (
    seq         bigserial UNIQUE,
    id          uuid PRIMARY KEY,
    name        text NOT NULL CONSTRAINT items_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);
