-- How a call's report reached callsync, recorded by its first claim, for
-- the operator console's story of a call: when ingest received it, who
-- published it (ingest for a webhook, the reconciler for a report found in
-- a platform's call list) and what ingest verified before taking it.
-- Calls claimed before this migration have none.
ALTER TABLE calls
    ADD COLUMN received_at timestamptz,
    ADD COLUMN published_by text,
    ADD COLUMN verified_by text;
