-- History of every applied interaction; the primary key is the event id (ce-id): an id is applied once.
CREATE TABLE interactions (
  event_id     text PRIMARY KEY,
  student_id   text NOT NULL,
  instance_id  text NOT NULL,
  topic        text NOT NULL,
  kind         text NOT NULL,
  sponsor      text,
  occurred_at  timestamptz NOT NULL,
  applied_at   timestamptz NOT NULL DEFAULT now(),
  payload      jsonb NOT NULL,
  artifacts    text[] NOT NULL DEFAULT '{}',
  mastery_after numeric(4, 1) NOT NULL
);
CREATE INDEX interactions_student_time ON interactions (student_id, occurred_at, event_id);

-- Current aggregate per learner and topic; the row lock serialises concurrent duplicates.
CREATE TABLE topic_state (
  student_id  text NOT NULL,
  topic       text NOT NULL,
  instance_id text NOT NULL,
  state       jsonb NOT NULL,
  mastery     numeric(4, 1) NOT NULL,
  level       text NOT NULL,
  components  jsonb NOT NULL,
  version     bigint NOT NULL,
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (student_id, topic)
);

CREATE TABLE mastery_snapshots (
  student_id text NOT NULL,
  topic      text NOT NULL,
  day        date NOT NULL,
  mastery    numeric(4, 1) NOT NULL,
  level      text NOT NULL,
  components jsonb NOT NULL,
  PRIMARY KEY (student_id, topic, day)
);

-- At most one alert per learner, topic, reason and day.
CREATE TABLE struggle_alerts (
  student_id  text NOT NULL,
  topic       text NOT NULL,
  reason      text NOT NULL,
  day         date NOT NULL,
  detail      text NOT NULL,
  event_id    text NOT NULL,
  detected_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (student_id, topic, reason, day)
);

-- Transactional outbox: events decided inside the apply transaction, published after commit.
CREATE TABLE outbox (
  event_id     text PRIMARY KEY,
  topic        text NOT NULL,
  ordering_key text,
  attributes   jsonb NOT NULL,
  data         jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  sent_at      timestamptz
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;
