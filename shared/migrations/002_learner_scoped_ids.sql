-- Event ids are scoped to their learner (SPEC §3): the same client id sent for two learners names two
-- interactions. `event_id` stays the interaction's own id (client id or server UUIDv7), unique per learner;
-- `ce_id` is the id it was published under (unique across learners). Rows from before this migration were
-- published with ce-id = event_id.
ALTER TABLE interactions DROP CONSTRAINT interactions_pkey;
ALTER TABLE interactions ADD PRIMARY KEY (student_id, event_id);
ALTER TABLE interactions ADD COLUMN ce_id text;
UPDATE interactions SET ce_id = event_id;
ALTER TABLE interactions ALTER COLUMN ce_id SET NOT NULL;
ALTER TABLE interactions ADD CONSTRAINT interactions_ce_id_key UNIQUE (ce_id);
