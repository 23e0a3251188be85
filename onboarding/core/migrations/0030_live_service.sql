-- The live service (issue 13): after production, one durable process per live service renews
-- keys, watches licences and contracts, suspends and terminates (workflows/live_service.py).

-- Several keys per application and environment over time: a renewal issues a new key while the
-- old one keeps working for the overlap. Each key still has its own issuance id (the first
-- `<application>/key/<environment>`, each renewal `<application>/key/<environment>/<n>`, the
-- generation fixed by the process), which is what makes a retried renewal issue no second key.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_application_id_environment_key;
CREATE INDEX api_keys_of_application ON api_keys (application_id, environment);
CREATE INDEX api_keys_of_organisation ON api_keys (business_registration_number)
    WHERE status = 'active';

-- Suspensions: what the key verification endpoint stops granting while they are in force.
-- One row per suspension, lifted rather than deleted (the record of it stays):
--   application_id NULL: every key of the organisation (a lapsed market-data licence);
--   scopes NULL: every API of the key (an incident, a lapsed contract); else only those APIs.
-- Several may be in force at once, for different causes: lifting one leaves the others.
-- The id is chosen by the process that suspends, so a retried commit writes it once, and the
-- live services of one organisation suspending for the same lapsed licence write one row.
CREATE TABLE key_suspensions (
    suspension_id   text PRIMARY KEY,
    business_registration_number char(10) NOT NULL REFERENCES organisations,
    application_id  text REFERENCES applications,
    scopes          text[],
    cause           text NOT NULL CHECK (cause IN ('platform', 'market_data_licence',
                                                   'platform_contract', 'service_contract')),
    reason          text NOT NULL,
    suspended_by    text NOT NULL,
    suspended_at    timestamptz NOT NULL DEFAULT now(),
    lifted_at       timestamptz,
    lifted_by       text,
    CHECK ((lifted_at IS NULL) = (lifted_by IS NULL))
);
CREATE INDEX key_suspensions_in_force ON key_suspensions (business_registration_number)
    WHERE lifted_at IS NULL;

-- The key verification endpoint reads suspensions: every committed change to one notifies the
-- hashes of the keys whose verdict it may alter on `api_key_changes`, the channel the key
-- cache forgets verdicts by (THE RULE of migration 0020, onboarding/store/keys.py). Written
-- here without 0020's helper so that this migration stands on its own; same payload: hex
-- hashes, comma-separated, at most 100 a notification.
CREATE FUNCTION key_suspensions_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    hashes bytea[];
BEGIN
    hashes := ARRAY(
        SELECT DISTINCT k.key_hash FROM api_keys k
        JOIN (SELECT business_registration_number, application_id FROM changed_rows) s
          ON k.business_registration_number = s.business_registration_number
         AND (s.application_id IS NULL OR k.application_id = s.application_id)
        WHERE k.status = 'active');
    FOR i IN 1 .. coalesce(cardinality(hashes), 0) BY 100 LOOP
        PERFORM pg_notify('api_key_changes', array_to_string(
            ARRAY(SELECT encode(h, 'hex') FROM unnest(hashes[i:i + 99]) AS h), ','));
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER key_suspensions_inserted AFTER INSERT ON key_suspensions
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION key_suspensions_changed();
CREATE TRIGGER key_suspensions_updated AFTER UPDATE ON key_suspensions
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION key_suspensions_changed();
