-- What the caller wants carried with a payment into its events (merchant-api: the channel, the
-- payment request, the payer), opaque to the ledger and bounded.
ALTER TABLE sagas ADD COLUMN metadata jsonb
    CONSTRAINT sagas_metadata_bounded CHECK (metadata IS NULL OR (jsonb_typeof(metadata) = 'object' AND length(metadata::text) <= 2048));
