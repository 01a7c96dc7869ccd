-- The outbox no longer NOTIFYs on insert. A notifying commit takes a cluster-wide lock that it
-- holds until its WAL is flushed, so every such commit of every service waited for the one
-- before it: at 300 payments a second through the gateway, dropping the trigger took the
-- median from 243-452 ms to 42-44 ms (docs/benchmarks.md). The writer and its relay are one
-- process, so the writer wakes the relay itself after its commit (paykit::events::wake_relays);
-- a row written by any other process is found by the relay's poll.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
