-- The reconciler's state, one row per platform (source). It lists the
-- platform's finished calls and queues those the ledger does not know:
-- calls whose webhook never arrived.
--
-- One replica reconciles a platform at a time: it holds the row's lease
-- (owner + expiry, renewed while the round runs, as for calls). A round is
-- due at `due_at`; the round in progress keeps its window and the cursor of
-- its next page, so that a replica that takes over after a crash resumes it
-- instead of starting again. `listed`, `known`, `queued` and `unfinished`
-- count the round in progress; the `last_*` columns describe the last
-- round that reached the end of its window.
CREATE TABLE reconcile_rounds (
    source          text        PRIMARY KEY,
    lease_owner     uuid,
    lease_until     timestamptz,
    due_at          timestamptz NOT NULL DEFAULT now(),
    window_start    timestamptz,
    window_end      timestamptz,
    next_cursor     text,
    pages           integer     NOT NULL DEFAULT 0,
    listed          bigint      NOT NULL DEFAULT 0,
    known           bigint      NOT NULL DEFAULT 0,
    queued          bigint      NOT NULL DEFAULT 0,
    unfinished      bigint      NOT NULL DEFAULT 0,
    last_window_end timestamptz,
    last_success_at timestamptz,
    last_error      text
);
