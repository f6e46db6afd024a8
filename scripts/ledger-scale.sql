-- Fills a ledger with a large history, to see how the operator console's
-- pages answer on it (docs/console.md, "On a large ledger"). Run it on a
-- scratch database the worker or the console has migrated, never on a
-- production ledger:
--
--   psql "$CALLSYNC_DATABASE_URL" -v calls=1000000 -f scripts/ledger-scale.sql
--
-- :calls calls over five sources, one every 7 seconds back from now (a
-- million is about 81 days), 200 000 contacts, a contact and a call-record
-- step per call; one call in a thousand parked and about one in a thousand
-- pending.

\set ON_ERROR_STOP on
\timing on

INSERT INTO calls (source, call_id, status, attempts, contact_id, first_seen_at, synced_at, parked_at)
SELECT (ARRAY['vapi', 'retell', 'bland', 'elevenlabs', 'voicedock'])[1 + g % 5],
       'call-' || g,
       CASE WHEN g % 1000 = 0 THEN 'parked' WHEN g % 997 = 0 THEN 'pending' ELSE 'synced' END,
       1,
       CASE WHEN g % 1000 = 0 OR g % 997 = 0 THEN NULL ELSE 'c' || (g % 200000) END,
       now() - g * interval '7 seconds',
       CASE WHEN g % 1000 = 0 OR g % 997 = 0 THEN NULL
            ELSE now() - g * interval '7 seconds' + interval '1 second' END,
       CASE WHEN g % 1000 = 0 THEN now() - g * interval '7 seconds' + interval '1 second' END
  FROM generate_series(1, :calls) g;

INSERT INTO call_steps (source, call_id, step, state, crm_object_id, done_at)
SELECT source, call_id, s.step, 'done',
       CASE WHEN s.step = 'contact'
            THEN coalesce(contact_id, 'c' || (substr(call_id, 6)::int % 200000))
            ELSE 'o' || call_id END,
       now()
  FROM calls, (VALUES ('contact'), ('call_log')) s (step)
 WHERE call_id LIKE 'call-%';

INSERT INTO contacts (crm, lookup_key, contact_id)
SELECT 'hubspot', 'phone:+3161' || lpad(g::text, 7, '0'), 'c' || g
  FROM generate_series(0, 199999) g
    ON CONFLICT DO NOTHING;

ANALYZE calls;
ANALYZE call_steps;
ANALYZE contacts;
