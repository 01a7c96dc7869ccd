-- When the ledger committed the payment or refund (the saga's last step), so that the list is
-- ordered by when payments happened and the live feed's delay can be measured from the commit.
ALTER TABLE transactions ADD COLUMN completed_at timestamptz;
UPDATE transactions SET completed_at = created_at WHERE completed_at IS NULL;
ALTER TABLE transactions ALTER COLUMN completed_at SET NOT NULL;
