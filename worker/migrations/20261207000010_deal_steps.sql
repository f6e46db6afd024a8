-- A deal per call and `[[deal]]` rule of CALLSYNC_MAPPING is a step like
-- the follow-up task, named after its rule's index: 'deal:0' … 'deal:15'
-- (a mapping holds at most 16 deal rules).
ALTER TABLE call_steps DROP CONSTRAINT call_steps_step_check;
ALTER TABLE call_steps ADD CONSTRAINT call_steps_step_check
    CHECK (step IN ('contact', 'call_log', 'contact_update', 'follow_up_task')
           OR step ~ '^deal:([0-9]|1[0-5])$');
