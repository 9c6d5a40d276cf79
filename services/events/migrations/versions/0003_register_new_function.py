"""register_new function: a first-time registration in one statement, its pool's row lock held inside the server only

A registration to a busy activity waits for the pool's row lock. Taken by a client statement, the lock stays held
until the client's next statements and its COMMIT reach the server, so every waiting request also waits for the
holder's process to get round to it; under load the queue behind one pool grows into a convoy. Inside a function
called on its own (autocommit), the lock is taken and released within one statement. A PL/pgSQL function also gives
each of its statements a fresh snapshot under READ COMMITTED, so the seat count after the lock sees every
registration committed before it, which one plain SQL statement (one snapshot, taken before the lock) cannot.

The status literals are those of events.domain (HOLDS_SEAT: confirmed, offered; waitlisted).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 02:50:00
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

REGISTER_NEW = r"""
CREATE OR REPLACE FUNCTION events_register_new(
    p_activity varchar, p_pool varchar, p_session varchar, p_key varchar, p_id varchar, p_participant varchar,
    p_kind varchar, p_display_name varchar, p_institution varchar, p_phone varchar, p_email varchar,
    p_consent boolean, p_token varchar, p_created timestamptz, p_updated timestamptz,
    p_event_id varchar, p_topic varchar, p_confirmed_type varchar, p_waitlisted_type varchar,
    p_confirmed_payload bytea, p_waitlisted_payload bytea, p_channel text,
    OUT outcome text, OUT seat boolean, OUT queue_position integer, OUT queue_seq integer)
LANGUAGE plpgsql VOLATILE AS $$
-- outcome: 'placed' (registered: confirmed when seat, else waitlisted at queue_position, and its event queued),
-- 'known' (this participant registered in the pool before: the caller decides what that means), or 'closed' (no
-- such open pool for this activity and session). A twin request racing this one fails on the unique constraint.
DECLARE
    v_capacity integer;
    v_held integer;
    v_title text;
    v_payload jsonb;
BEGIN
    IF EXISTS (SELECT 1 FROM registrations WHERE pool_id = p_pool AND participant_key = p_key) THEN
        outcome := 'known';
        RETURN;
    END IF;
    -- The pool's row lock: seat decisions in this pool happen one at a time, until this statement ends.
    UPDATE pools SET next_seq = next_seq + 1
     WHERE id = p_pool AND activity_id = p_activity AND open AND session_id IS NOT DISTINCT FROM p_session
    RETURNING capacity, next_seq - 1 INTO v_capacity, queue_seq;
    IF NOT FOUND THEN
        outcome := 'closed';
        RETURN;
    END IF;
    -- A new snapshot from here: every registration committed before the lock was ours. Held seats are counted (up
    -- to the capacity only, so the cost does not grow past it) when there is a capacity; nobody jumps a waitlist.
    SELECT count(*) INTO queue_position FROM registrations WHERE pool_id = p_pool AND status = 'waitlisted';
    seat := queue_position = 0;
    IF seat AND v_capacity IS NOT NULL THEN
        SELECT count(*) INTO v_held FROM (SELECT 1 FROM registrations
         WHERE pool_id = p_pool AND status IN ('confirmed', 'offered') LIMIT v_capacity) AS held;
        seat := v_held < v_capacity;
    END IF;
    queue_position := CASE WHEN seat THEN NULL ELSE queue_position + 1 END;
    INSERT INTO registrations (id, activity_id, pool_id, session_id, participant_key, participant_id,
                               participant_kind, display_name, institution_id, team_id, contact_phone, contact_email,
                               public_consent, status, queue_seq, offer_expires_at, checkin_token, version,
                               created_at, updated_at)
    VALUES (p_id, p_activity, p_pool, p_session, p_key, p_participant, p_kind, p_display_name, p_institution, NULL,
            p_phone, p_email, p_consent, CASE WHEN seat THEN 'confirmed' ELSE 'waitlisted' END, queue_seq, NULL,
            p_token, 1, p_created, p_updated);
    -- The event: the one that matches the decision, with the activity's current title and the queue position.
    SELECT title_zh INTO v_title FROM activities WHERE id = p_activity;
    v_payload := jsonb_set(convert_from(CASE WHEN seat THEN p_confirmed_payload ELSE p_waitlisted_payload END,
                                        'UTF8')::jsonb, '{data,activity_title}', to_jsonb(v_title));
    IF NOT seat THEN
        v_payload := jsonb_set(v_payload, '{data,queue_position}', to_jsonb(queue_position));
    END IF;
    INSERT INTO outbox (event_id, topic, key, event_type, payload, created_at, attempts)
    VALUES (p_event_id, p_topic, p_id, CASE WHEN seat THEN p_confirmed_type ELSE p_waitlisted_type END,
            convert_to(v_payload::text, 'UTF8'), p_created, 0);
    PERFORM pg_notify(p_channel, '');
    outcome := 'placed';
END
$$
"""

SIGNATURE = ("events_register_new(varchar, varchar, varchar, varchar, varchar, varchar, varchar, varchar, varchar, "
             "varchar, varchar, boolean, varchar, timestamptz, timestamptz, varchar, varchar, varchar, varchar, bytea, bytea, text)")


def upgrade() -> None:
    """Create events_register_new."""
    op.execute(REGISTER_NEW)


def downgrade() -> None:
    """Drop events_register_new."""
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
