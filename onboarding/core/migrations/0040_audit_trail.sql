-- The audit log as it stands: without the lines a `lines_superseded` line names.
--
-- A commit is written in the workflow task that makes it (a local activity). Temporal may
-- discard that task after the commit was written: it force-closes a task when more messages
-- arrive meanwhile than it buffers, or when the task's worker is lost. The task then runs again
-- with the messages that came since, and its commit can number its lines differently: a line
-- id the discarded task wrote may now belong to another line. The new commit writes its own
-- lines, under ids of their own where those are taken, and one `lines_superseded` line naming
-- the discarded task's lines that it replaces (activities/records.py). Nothing is changed or
-- deleted: the log stays append-only, and this view is what it says.
CREATE VIEW audit_trail AS
    SELECT a.* FROM audit_log a
     WHERE NOT EXISTS (SELECT 1 FROM audit_log s
                        WHERE s.action = 'lines_superseded'
                          AND s.application_id IS NOT DISTINCT FROM a.application_id
                          AND s.details->'entry_ids' ? a.entry_id);
CREATE INDEX audit_log_superseding ON audit_log (application_id)
    WHERE action = 'lines_superseded';
