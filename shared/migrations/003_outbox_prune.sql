-- The outbox relay prunes sent rows past their retention: find them without scanning the table.
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
