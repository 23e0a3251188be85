-- Key verification answers from memory (onboarding/services/key_cache.py): each endpoint
-- replica keeps the verdicts it gave, by key hash, and LISTENs on channel `api_key_changes` to
-- forget a verdict the moment what it was built from changes. These triggers are what tells it:
-- every committed change to a row the verdict reads notifies the hashes of the keys affected,
-- hex-encoded, comma-separated (at most 100 a notification: NOTIFY payloads must stay under
-- 8,000 bytes); `*` means "forget everything" (TRUNCATE).
--
-- THE RULE: any table the verdict reads (the lookup in onboarding/store/keys.py: today
-- api_keys and organisations; later, suspensions) must notify this channel, with the hashes of
-- the keys whose verdict a change may alter, from a trigger of its own like those below. A
-- table that does not is one whose changes replicas see only when their answers age out
-- (KEY_CACHE_MAX_AGE_SECONDS).
--
-- Statement-level triggers with transition tables: one notification per statement and 100
-- keys, not one per row. A notification is sent at commit, and only if the transaction
-- commits; PostgreSQL delivers it once the change is visible to other sessions. Channel and
-- payloads are readable by any role that can connect (LISTEN needs no privilege): they carry
-- hashes, never keys, and a hash cannot be presented as a key.

CREATE FUNCTION notify_api_key_changes(hashes bytea[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    batch CONSTANT integer := 100;  -- 100 x 65 characters
BEGIN
    FOR i IN 1 .. coalesce(cardinality(hashes), 0) BY batch LOOP
        PERFORM pg_notify('api_key_changes', array_to_string(
            ARRAY(SELECT encode(h, 'hex') FROM unnest(hashes[i:i + batch - 1]) AS h), ','));
    END LOOP;
END $$;

CREATE FUNCTION api_keys_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM notify_api_key_changes(ARRAY(SELECT key_hash FROM new_rows));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM notify_api_key_changes(ARRAY(
            SELECT key_hash FROM old_rows UNION SELECT key_hash FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM notify_api_key_changes(ARRAY(SELECT key_hash FROM old_rows));
    ELSE
        PERFORM pg_notify('api_key_changes', '*');
    END IF;
    RETURN NULL;
END $$;

-- A trigger with transition tables takes one event (a PostgreSQL rule): one per event.
CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();
CREATE TRIGGER api_keys_updated AFTER UPDATE ON api_keys
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_changed();

-- The verdict names the key's organisation (legal_name): a renamed organisation notifies its
-- keys. Inserting one changes no verdict (it has no keys yet); deleting or truncating one that
-- has keys is refused by the foreign key, or truncates api_keys too (CASCADE), which notifies.
CREATE FUNCTION organisations_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM notify_api_key_changes(ARRAY(
        SELECT k.key_hash FROM api_keys k
        WHERE k.business_registration_number IN (
            SELECT business_registration_number FROM old_rows
            UNION SELECT business_registration_number FROM new_rows)));
    RETURN NULL;
END $$;

CREATE TRIGGER organisations_updated AFTER UPDATE ON organisations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION organisations_changed();
