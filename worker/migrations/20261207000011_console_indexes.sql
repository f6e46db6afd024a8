-- Indexes for the operator console's reads on a large ledger. Measured on
-- a ledger of a million calls (docs/console.md, "On a large ledger"): each
-- of these turned a scan of every call into a few index pages.

-- The overview's "synced in the last hour / day".
CREATE INDEX calls_synced_at_idx ON calls (synced_at) WHERE synced_at IS NOT NULL;

-- The calls list, newest first, a page at a time.
CREATE INDEX calls_first_seen_idx ON calls (first_seen_at DESC, source, call_id);

-- Calls by contact: the contact a synced call names, and the contact step
-- of a call still pending or parked.
CREATE INDEX calls_contact_idx ON calls (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX call_steps_contact_idx ON call_steps (crm_object_id) WHERE step = 'contact';

-- A number typed into the search, whatever CRM the contacts were found in
-- (the primary key leads with the CRM).
CREATE INDEX contacts_lookup_key_idx ON contacts (lookup_key);

-- A call id or its beginning, compared byte by byte so that a range over
-- the index finds every id that starts with it.
CREATE INDEX calls_call_id_idx ON calls ((call_id COLLATE "C"));
