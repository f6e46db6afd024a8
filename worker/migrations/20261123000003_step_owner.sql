-- Which attempt started a step, so that only that attempt can abandon it.
ALTER TABLE call_steps ADD COLUMN started_by uuid;
