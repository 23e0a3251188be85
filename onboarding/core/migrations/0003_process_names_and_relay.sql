-- The platform's words for what a column holds (one word, one meaning):
-- an audit entry's result (applied, refused, succeeded, failed), which process an application
-- follows, which contract a contract is.
ALTER TABLE audit_log RENAME COLUMN outcome TO result;
ALTER TABLE audit_log RENAME CONSTRAINT audit_log_outcome_check TO audit_log_result_check;
ALTER TABLE applications RENAME COLUMN kind TO process;
ALTER TABLE applications RENAME CONSTRAINT applications_kind_check TO applications_process_check;
ALTER TABLE contracts RENAME COLUMN kind TO contract_type;
ALTER TABLE contracts RENAME CONSTRAINT contracts_kind_check TO contracts_contract_type_check;
ALTER TABLE contracts RENAME CONSTRAINT contracts_kind_contract_number_key
    TO contracts_contract_type_contract_number_key;

-- The outbox relay (onboarding/mail/relay.py) sends what is due and puts a failed notice off:
-- when it may be tried again, and why the last attempt failed.
ALTER TABLE notices
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN last_error text;
DROP INDEX notices_pending;
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE status = 'pending';
