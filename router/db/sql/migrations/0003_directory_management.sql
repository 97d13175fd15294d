-- Directory management: free-form metadata and tags on contact methods (the
-- seed products' custom_variables/metadata and tags), and pending verification
-- codes (hashed, short-lived, attempts counted).

ALTER TABLE contact_methods
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    ADD COLUMN tags     text[] NOT NULL DEFAULT '{}';

-- Keyset pagination and search run in (user, transport, value) order.
CREATE INDEX contact_methods_by_transport ON contact_methods (transport);

CREATE TABLE contact_method_verifications (
    contact_method_id  uuid PRIMARY KEY REFERENCES contact_methods (id) ON DELETE CASCADE,
    code_hash          text NOT NULL,
    expires_at         timestamptz NOT NULL,
    failed_attempts    integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    created_at         timestamptz NOT NULL DEFAULT now()
);
