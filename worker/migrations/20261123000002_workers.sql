-- Live workers, so that each takes its share of the CRM's request budget.
CREATE TABLE workers (
    id        uuid        PRIMARY KEY,
    crm       text        NOT NULL,
    last_seen timestamptz NOT NULL DEFAULT now()
);
