-- Publication: a member company's API goes to the sandbox catalogue, then to production.

-- The integration method agreed at pre-review, and the publication application that owns the
-- catalogue entry (so that a subscription reaching production can tell it).
ALTER TABLE api_catalogue
    ADD COLUMN integration_method text,
    ADD COLUMN publication_application_id text REFERENCES applications;

-- Each specification version published, by stage: the catalogue is versioned by specification.
CREATE TABLE api_versions (
    api_id          text NOT NULL REFERENCES api_catalogue,
    spec_sha256     char(64) NOT NULL,
    spec_version    text NOT NULL,
    specification   jsonb NOT NULL,
    stage           text NOT NULL CHECK (stage IN ('sandbox', 'production')),
    published_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_id, spec_sha256, stage)
);
