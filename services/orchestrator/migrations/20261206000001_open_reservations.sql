-- The reservations still open, and when each times out. A pending transfer stays
-- kind = 'pending' for good (its post or void is a transfer of its own), so the expiry scan
-- over `transfers` walked every reservation ever made, twice a second; it reads this table
-- instead, which holds only the open ones. The ledger adds a row with each pending transfer
-- that has a timeout and removes it in the transaction that posts or voids it; the invariant
-- `open_reservations_listed` holds the table to the transfers.
CREATE TABLE open_reservations (
    pending_id uuid        PRIMARY KEY REFERENCES transfers (id),
    timeout_at timestamptz NOT NULL
);
CREATE INDEX open_reservations_by_timeout ON open_reservations (timeout_at);

INSERT INTO open_reservations (pending_id, timeout_at)
SELECT t.id, t.timeout_at FROM transfers t
WHERE t.kind = 'pending' AND t.timeout_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id);

DROP INDEX transfers_open_pending_timeouts;
