-- The ledger: what callsync did for each call, so that every effect happens once.

-- One row per call (source, call id). A worker holds a call exclusively
-- through a lease (owner + expiry) rather than a session lock, so that a
-- dropped database connection does not silently hand the call to another
-- worker while a CRM request is still in flight.
CREATE TABLE calls (
    source        text        NOT NULL,
    call_id       text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'synced', 'parked')),
    attempts      integer     NOT NULL DEFAULT 0,
    lease_owner   uuid,
    lease_until   timestamptz,
    contact_id    text,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    synced_at     timestamptz,
    last_error    text,
    PRIMARY KEY (source, call_id)
);

CREATE INDEX calls_status_idx ON calls (status) WHERE status <> 'synced';

-- One row per CRM effect of a call. 'started' is written before the CRM
-- request and means "may have been applied"; 'done' carries the CRM's id.
CREATE TABLE call_steps (
    source        text        NOT NULL,
    call_id       text        NOT NULL,
    step          text        NOT NULL
                              CHECK (step IN ('contact', 'call_log', 'contact_update', 'follow_up_task')),
    state         text        NOT NULL CHECK (state IN ('started', 'done')),
    crm_object_id text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    done_at       timestamptz,
    PRIMARY KEY (source, call_id, step),
    FOREIGN KEY (source, call_id) REFERENCES calls (source, call_id) ON DELETE CASCADE
);

-- The contact callsync found or created per phone number (or e-mail), per
-- CRM. It serialises contact creation across replicas and remembers ids the
-- CRM's search index may not show yet. contact_id is NULL while a create
-- whose outcome is unknown is pending (pending_since set).
CREATE TABLE contacts (
    crm           text        NOT NULL,
    lookup_key    text        NOT NULL,
    contact_id    text,
    pending_since timestamptz,
    lease_owner   uuid,
    lease_until   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (crm, lookup_key)
);

-- The newest call written into a contact's last-call fields, so that a late
-- delivery of an older call does not overwrite a newer one.
CREATE TABLE contact_last_call (
    crm        text        NOT NULL,
    contact_id text        NOT NULL,
    ended_at   timestamptz NOT NULL,
    source     text        NOT NULL,
    call_id    text        NOT NULL,
    PRIMARY KEY (crm, contact_id)
);
