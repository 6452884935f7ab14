-- signoff schema for PostgreSQL, version 1 (the SQLite schema's versions 1 and 2).
-- Timestamps are TEXT in the canonical UTC form (microseconds, `Z`), which sorts
-- in time order, exactly as on SQLite; JSON columns hold compact JSON text. The
-- two backends therefore store the same bytes and hash the same audit chain.

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    key_prefix  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('agent', 'reviewer', 'admin')),
    identity    TEXT NOT NULL,
    teams       TEXT NOT NULL DEFAULT '[]',
    label       TEXT,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE intents (
    intent_id         TEXT PRIMARY KEY,
    intent_type       TEXT NOT NULL,
    correlation_id    TEXT NOT NULL,
    from_agent        TEXT NOT NULL,
    to_agent          TEXT,
    reply_to          TEXT,
    payload           TEXT NOT NULL,
    status            TEXT NOT NULL,
    waiting_reason    TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    human_task        TEXT,
    assignees         TEXT NOT NULL DEFAULT '[]',
    assigned_at       TEXT,
    due_at            TEXT,
    remind_count      BIGINT NOT NULL DEFAULT 0,
    escalation_stage  BIGINT NOT NULL DEFAULT 0,
    result            TEXT,
    lifecycle         TEXT NOT NULL DEFAULT '{}',
    last_seq          BIGINT NOT NULL,
    last_cursor       BIGINT NOT NULL,
    workflow          TEXT,
    step_of           TEXT,
    votes             TEXT NOT NULL DEFAULT '[]'
);

CREATE INDEX intents_waiting_for_human ON intents (created_at)
    WHERE status = 'WAITING' AND waiting_reason = 'WAITING_FOR_HUMAN';
CREATE INDEX intents_by_reply_to ON intents (reply_to, last_cursor)
    WHERE reply_to IS NOT NULL;

-- The head of the global commit order and of the audit hash chain: one row. Every
-- write transaction of every instance locks it first, so commit positions are
-- handed out gap-free and commit in the order they were handed out, and each
-- event's hash chains from the one committed before it, across the fleet.
CREATE TABLE chain_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    cursor      BIGINT NOT NULL,
    hash        TEXT
);
INSERT INTO chain_head (id, cursor, hash) VALUES (1, 0, NULL);

CREATE TABLE events (
    cursor          BIGINT PRIMARY KEY,
    intent_id       TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    waiting_reason  TEXT,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    details         TEXT NOT NULL,
    affects_tasks   BOOLEAN NOT NULL DEFAULT FALSE,
    task            TEXT,
    hash            TEXT NOT NULL,
    UNIQUE (intent_id, seq)
);

CREATE INDEX events_for_task_streams ON events (cursor) WHERE affects_tasks;

-- `commit_cursor` is the intent's last commit position in the write that queued
-- the delivery, so other instances find a write's deliveries by its cursor range.
CREATE TABLE agent_deliveries (
    agent          TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    intent_id      TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    at             TEXT NOT NULL,
    commit_cursor  BIGINT NOT NULL,
    PRIMARY KEY (agent, seq)
);

CREATE INDEX agent_deliveries_by_commit ON agent_deliveries (commit_cursor);

CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (principal, endpoint, key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE inbox_messages (
    cursor     BIGINT PRIMARY KEY,
    thread_id  TEXT NOT NULL,
    author     TEXT NOT NULL,
    message    TEXT NOT NULL,
    at         TEXT NOT NULL
);

CREATE INDEX inbox_messages_by_thread ON inbox_messages (thread_id, cursor);

-- Lifecycle timers. An instance claims due rows with a lease (FOR UPDATE SKIP
-- LOCKED, so no two instances hold a claim on a row at once), then fires each in a write
-- transaction that deletes the row with its effect. A row still leased to an
-- instance that died is claimed again once `lease_until` passes.
CREATE TABLE timers (
    intent_id    TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('remind', 'escalate', 'timeout')),
    due_at       TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    lease_owner  TEXT,
    lease_until  TEXT,
    PRIMARY KEY (intent_id, kind)
);

CREATE INDEX timers_by_due ON timers (due_at);

CREATE TABLE outbox (
    outbox_id        BIGSERIAL PRIMARY KEY,
    intent_id        TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'slack', 'webhook')),
    recipient        TEXT NOT NULL,
    target           TEXT NOT NULL,
    message          TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    lease_owner      TEXT,   -- the instance sending it; only its result is recorded
    lease_until      TEXT
);

CREATE INDEX outbox_by_next_attempt ON outbox (next_attempt_at);
CREATE INDEX outbox_by_intent ON outbox (intent_id);
