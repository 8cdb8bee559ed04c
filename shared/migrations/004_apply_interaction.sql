-- updateProgress applies an interaction in one round trip (functions/updateProgress/ledger.ts): the state
-- transition is computed by the caller from the version it last saw, and this function writes it only if
-- the row is still at that version (optimistic concurrency instead of a held row lock), all in the one
-- transaction of its statement:
--   'duplicate' the learner's interaction id is in the ledger already: nothing changes;
--   'conflict'  the row is not at p_expected_version (another delivery, or the caller's view is stale):
--               nothing changes, `current` is the row to recompute from;
--   'applied'   topic_state advanced to p_expected_version + 1, the interaction, the day's snapshot, the
--               struggle alerts new for the day, and the outbox rows (struggle rows only for new alerts)
--               are written.
-- Every answer carries `current` (the row after the call) and `pending`: the learner's unsent outbox rows,
-- oldest first, to publish now.
CREATE INDEX IF NOT EXISTS outbox_unsent_key ON outbox (ordering_key, created_at, event_id) WHERE sent_at IS NULL;

CREATE OR REPLACE FUNCTION ldr_apply_interaction(
  p_expected_version bigint,
  -- event_id, student_id, instance_id, topic, kind, sponsor, occurred_at, payload, artifacts, ce_id
  p_interaction jsonb,
  p_state jsonb,
  p_mastery numeric,
  p_level text,
  p_components jsonb,
  p_day date,
  -- [{reason, detail}]
  p_struggles jsonb,
  -- [{event_id, topic, ordering_key, attributes, data, reason}]: reason set = only if that alert is new
  p_outbox jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  s text := p_interaction->>'student_id';
  t text := p_interaction->>'topic';
  id text := p_interaction->>'event_id';
  result text;
  ts timestamptz;
  alerts text[] := '{}';
  st jsonb;
BEGIN
  IF EXISTS (SELECT 1 FROM interactions WHERE student_id = s AND event_id = id) THEN
    result := 'duplicate';
  ELSE
    IF p_expected_version = 0 THEN
      INSERT INTO topic_state (student_id, topic, instance_id, state, mastery, level, components, version, updated_at)
      VALUES (s, t, p_interaction->>'instance_id', p_state, p_mastery, p_level, p_components, 1, now())
      ON CONFLICT DO NOTHING RETURNING updated_at INTO ts;
    ELSE
      UPDATE topic_state SET state = p_state, mastery = p_mastery, level = p_level, components = p_components,
        version = p_expected_version + 1, instance_id = p_interaction->>'instance_id', updated_at = now()
      WHERE student_id = s AND topic = t AND version = p_expected_version RETURNING updated_at INTO ts;
    END IF;
    IF ts IS NULL THEN
      result := 'conflict';
    ELSE
      result := 'applied';
      INSERT INTO interactions (event_id, student_id, instance_id, topic, kind, sponsor, occurred_at, payload,
        artifacts, mastery_after, ce_id)
      VALUES (id, s, p_interaction->>'instance_id', t, p_interaction->>'kind', p_interaction->>'sponsor',
        (p_interaction->>'occurred_at')::timestamptz, p_interaction->'payload',
        ARRAY(SELECT jsonb_array_elements_text(coalesce(p_interaction->'artifacts', '[]'))), p_mastery,
        p_interaction->>'ce_id');
      INSERT INTO mastery_snapshots (student_id, topic, day, mastery, level, components)
      VALUES (s, t, p_day, p_mastery, p_level, p_components)
      ON CONFLICT (student_id, topic, day) DO UPDATE
        SET mastery = excluded.mastery, level = excluded.level, components = excluded.components;
      FOR st IN SELECT value FROM jsonb_array_elements(p_struggles) LOOP
        INSERT INTO struggle_alerts (student_id, topic, reason, day, detail, event_id)
        VALUES (s, t, st->>'reason', p_day, st->>'detail', id) ON CONFLICT DO NOTHING;
        IF FOUND THEN alerts := alerts || (st->>'reason'); END IF;
      END LOOP;
      INSERT INTO outbox (event_id, topic, ordering_key, attributes, data)
      SELECT o->>'event_id', o->>'topic', o->>'ordering_key', o->'attributes', o->'data'
      FROM jsonb_array_elements(p_outbox) o
      WHERE o->>'reason' IS NULL OR o->>'reason' = ANY (alerts)
      ON CONFLICT DO NOTHING;
    END IF;
  END IF;
  RETURN jsonb_build_object(
    'status', result,
    'current', (SELECT jsonb_build_object('instance_id', instance_id, 'state', state, 'mastery', mastery,
        'level', level, 'components', components, 'version', version, 'updated_at', updated_at)
      FROM topic_state WHERE student_id = s AND topic = t),
    'pending', (SELECT coalesce(jsonb_agg(jsonb_build_object('topic', topic, 'ordering_key', ordering_key,
        'attributes', attributes, 'data', data) ORDER BY created_at, event_id), '[]')
      FROM outbox WHERE ordering_key = s AND sent_at IS NULL));
END;
$$;
