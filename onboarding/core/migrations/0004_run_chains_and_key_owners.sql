-- The run of its workflow that began an application: admission refuses the same application
-- id started again as another run chain (onboarding/store/admission.py). Applications on record
-- before this have none.
ALTER TABLE applications ADD COLUMN first_execution_run_id text;

-- The process that owns a key, when it is not the application's own workflow (NULL: the
-- application's). The key-reconciliation schedule revokes every active key whose owning process
-- closed other than by reaching production (onboarding/store/keys.py, `held_by_open_processes`); a process
-- that later takes over a key (the live service, issue 13) is named here.
ALTER TABLE api_keys ADD COLUMN owner_workflow_id text;
CREATE INDEX api_keys_active ON api_keys (application_id) WHERE status = 'active';
