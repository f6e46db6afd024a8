-- What the operator console shows that the ledger did not keep.
--
-- Whether each live worker is paused and why (the reason its /readyz
-- gives), written with its heartbeat, so that a process other than the
-- worker can say why calls are waiting.
ALTER TABLE workers
    ADD COLUMN paused_reason text,
    ADD COLUMN paused_detail text;

-- When a call was parked, for "parked in the last hour".
ALTER TABLE calls ADD COLUMN parked_at timestamptz;

-- What the last finished reconcile round found and queued (the running
-- counters are reset when a round finishes).
ALTER TABLE reconcile_rounds
    ADD COLUMN last_listed bigint,
    ADD COLUMN last_queued bigint;
