-- A request budget every live worker takes from (the CRM's search limit):
-- one row per request the budget's window allows, holding when it was last
-- taken. A request takes the row whose time left the window longest ago, so
-- that across all workers no more than the budget is sent in any window.
CREATE TABLE budget_slots (
    crm     text        NOT NULL,
    budget  text        NOT NULL,
    slot    integer     NOT NULL,
    used_at timestamptz NOT NULL DEFAULT 'epoch',
    PRIMARY KEY (crm, budget, slot)
);
