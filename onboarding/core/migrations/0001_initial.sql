-- The platform's own records. Temporal holds the state of each running application; these
-- tables hold what must outlive a workflow or be read by other systems (the API gateway,
-- reporting, auditors).

-- Organisations: user organisations (fintechs) and member companies (API providers).
-- Corporations only: identified by their 10-digit business registration number.
CREATE TABLE organisations (
    business_registration_number  char(10) PRIMARY KEY CHECK (business_registration_number ~ '^[0-9]{10}$'),
    corporate_registration_number char(13) NOT NULL CHECK (corporate_registration_number ~ '^[0-9]{13}$'),
    legal_name      text NOT NULL CHECK (legal_name <> ''),
    representative  text NOT NULL CHECK (representative <> ''),
    contact_emails  text[] NOT NULL CHECK (cardinality(contact_emails) > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The operator's staff and the roles they hold: who may take which decision, and who receives
-- a team's reminders. A staff id is the person's e-mail address.
CREATE TABLE staff_roles (
    staff_id    text NOT NULL CHECK (staff_id ~ '^[^@\s]+@[^@\s]+$'),
    role        text NOT NULL CHECK (role IN ('pre_verification_reviewer', 'market_data_sales',
                                              'platform_team', 'final_approver', 'operations_manager')),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (staff_id, role)
);
CREATE INDEX staff_by_role ON staff_roles (role);

-- The API catalogue: what subscription applications may request. A published API is first
-- in the sandbox, and reaches production when a real service that uses it launches.
CREATE TABLE api_catalogue (
    api_id          text PRIMARY KEY CHECK (api_id ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    name            text NOT NULL,
    category        text NOT NULL,
    is_market_data  boolean NOT NULL,
    provider_business_registration_number char(10) REFERENCES organisations,
    stage           text NOT NULL DEFAULT 'sandbox' CHECK (stage IN ('sandbox', 'production', 'withdrawn')),
    spec_version    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Applications: one row per subscription or publication application, mirroring the
-- workflow so that other systems can list them without asking Temporal.
CREATE TABLE applications (
    application_id  text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('subscription', 'publication')),
    business_registration_number char(10) NOT NULL REFERENCES organisations,
    workflow_id     text NOT NULL UNIQUE,
    status          text NOT NULL,
    current_step    text NOT NULL,
    requested_apis  text[] NOT NULL DEFAULT '{}',
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Contracts: market-data licences, platform contracts and service contracts, as recorded by
-- the teams that sign them. A market-data licence on file satisfies later applications of
-- the same organisation while it is valid.
CREATE TABLE contracts (
    contract_id     bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('market_data_licence', 'platform', 'service')),
    contract_number text NOT NULL,
    business_registration_number char(10) NOT NULL REFERENCES organisations,
    application_id  text REFERENCES applications,
    signed_on       date NOT NULL,
    valid_from      date NOT NULL,
    valid_until     date NOT NULL,
    recorded_by     text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, contract_number),
    CHECK (valid_from <= valid_until)
);
CREATE INDEX contracts_by_organisation ON contracts (business_registration_number, kind, valid_until);

-- API keys: only a hash of the key and a short display prefix are ever stored. One key per
-- application and environment; the issuance id (chosen by the workflow) makes a retried
-- issuance find the key it already issued.
CREATE TABLE api_keys (
    key_id          uuid PRIMARY KEY,
    issuance_id     text NOT NULL UNIQUE,
    application_id  text NOT NULL REFERENCES applications,
    business_registration_number char(10) NOT NULL REFERENCES organisations,
    environment     text NOT NULL CHECK (environment IN ('sandbox', 'production')),
    key_hash        bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    display_prefix  text NOT NULL,
    scopes          text[] NOT NULL,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    issued_at       timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text,
    UNIQUE (application_id, environment),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

-- Notices: an outbox. The notice id (chosen by the workflow) makes a retried send find the
-- notice it already wrote; delivery marks it sent. Bodies hold no secret: a key delivery
-- notice records that a key was delivered, never the key.
CREATE TABLE notices (
    notice_id       text PRIMARY KEY,
    application_id  text,
    template        text NOT NULL,
    language        text NOT NULL CHECK (language IN ('ko', 'en')),
    recipients      text[] NOT NULL CHECK (cardinality(recipients) > 0),
    context         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX notices_pending ON notices (created_at) WHERE status = 'pending';

-- The audit log: every decision (applied or refused) and every activity outcome. Append
-- only: the database itself refuses UPDATE, DELETE and TRUNCATE. The entry id (chosen by
-- the caller) makes a retried write harmless.
CREATE TABLE audit_log (
    seq             bigserial PRIMARY KEY,
    entry_id        text NOT NULL UNIQUE,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    application_id  text,
    workflow_id     text,
    actor           text NOT NULL,
    action          text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('applied', 'refused', 'succeeded', 'failed')),
    reason          text,
    details         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_application ON audit_log (application_id, seq);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
