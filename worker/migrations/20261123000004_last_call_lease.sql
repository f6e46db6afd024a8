-- A lease on a contact's last-call fields, held while one call's update is
-- in flight, so that a newer call's update cannot land before an older one
-- that was sent first (and the older one then overwrite it).
ALTER TABLE contact_last_call
    ADD COLUMN lease_owner uuid,
    ADD COLUMN lease_until timestamptz;
