-- signoff schema, version 1.
-- Timestamps are TEXT in the canonical UTC form (microseconds, `Z`), which sorts
-- in time order. JSON columns hold compact JSON text.

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    key_prefix  TEXT NOT NULL,          -- first characters, to recognise a key in listings
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
    remind_count      INTEGER NOT NULL DEFAULT 0,
    escalation_stage  INTEGER NOT NULL DEFAULT 0,
    result            TEXT,
    lifecycle         TEXT NOT NULL DEFAULT '{}',   -- the resolved reminder/escalation/timeout policy
    last_seq          INTEGER NOT NULL,
    last_cursor       INTEGER NOT NULL
);

CREATE INDEX intents_waiting_for_human ON intents (created_at)
    WHERE status = 'WAITING' AND waiting_reason = 'WAITING_FOR_HUMAN';
CREATE INDEX intents_by_reply_to ON intents (reply_to, last_cursor)
    WHERE reply_to IS NOT NULL;

-- `cursor` is the global commit order shared with inbox messages: gap-free and
-- increasing, so task streams and inbox change feeds resume from it.
CREATE TABLE events (
    cursor          INTEGER PRIMARY KEY,
    intent_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    status          TEXT NOT NULL,
    waiting_reason  TEXT,
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    details         TEXT NOT NULL,
    affects_tasks   INTEGER NOT NULL DEFAULT 0,
    task            TEXT,   -- the reviewer task as committed with this event, for task streams
    hash            TEXT NOT NULL,  -- sha256(previous event's hash, this event as canonical JSON)
    UNIQUE (intent_id, seq)
);

CREATE INDEX events_for_task_streams ON events (cursor) WHERE affects_tasks = 1;

-- Per-agent delivery cursor for GET /v1/agents/{address}/intents/stream.
CREATE TABLE agent_deliveries (
    agent       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    intent_id   TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (agent, seq)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (principal, endpoint, key)
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

CREATE TABLE inbox_messages (
    cursor     INTEGER PRIMARY KEY,
    thread_id  TEXT NOT NULL,
    author     TEXT NOT NULL,
    message    TEXT NOT NULL,
    at         TEXT NOT NULL
);

CREATE INDEX inbox_messages_by_thread ON inbox_messages (thread_id, cursor);

-- Lifecycle timers: at most one pending timer of each kind per intent. The
-- scheduler claims and fires due rows inside the one transaction that appends
-- their event and schedules the next, on the only writer, so a timer needs no
-- lease: it is either still here or fired, never half-way. (The outbox below,
-- whose sends happen outside any transaction, is leased.)
CREATE TABLE timers (
    intent_id  TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('remind', 'escalate', 'timeout')),
    due_at     TEXT NOT NULL,
    attempt    INTEGER NOT NULL,   -- the reminder number or escalation stage it fires
    PRIMARY KEY (intent_id, kind)
) WITHOUT ROWID;

CREATE INDEX timers_by_due ON timers (due_at);

-- Notifications to send outside the database transaction, with retries. A row is
-- leased while a sender works on it, and deleted once it is sent or given up.
CREATE TABLE outbox (
    outbox_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    intent_id        TEXT NOT NULL,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'slack', 'webhook')),
    recipient        TEXT NOT NULL,   -- the reviewer, team or address it is for
    target           TEXT NOT NULL,
    message          TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    lease_until      TEXT
);

CREATE INDEX outbox_by_next_attempt ON outbox (next_attempt_at);
