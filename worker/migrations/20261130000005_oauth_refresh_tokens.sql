-- The newest refresh token of a CRM whose token endpoint rotates them
-- (GoHighLevel issues a new refresh token with every access token and the
-- old one stops working). Kept here, not in a variable, so that every
-- replica and every restart uses the newest; the row lock makes renewals
-- single-flight across replicas. `configured` is the SHA-256 of the
-- refresh token in the worker's configuration: when an operator configures
-- a new one (the app was installed again), it replaces the stored one.
CREATE TABLE oauth_refresh_tokens (
    crm text PRIMARY KEY,
    configured text NOT NULL,
    refresh_token text NOT NULL,
    rotated_at timestamptz NOT NULL DEFAULT now()
);
