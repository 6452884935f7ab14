//! The engine: the only code that changes intents. Each operation checks the rules
//! (in `domain`), then asks the store to apply the change in one transaction; live
//! subscribers hear about it only after it is committed.

pub mod decisions;
pub mod health;
pub mod hub;
pub mod inbox;
pub mod keys;
pub mod notify;
pub mod scheduler;
pub mod streams;
pub mod worker;
pub mod workflow;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::DatabaseLocation;
use crate::domain::event::{CREATED, HUMAN_TASK_ASSIGNED, SUBMITTED};
use crate::domain::lifecycle::PolicyContext;
use crate::domain::{
    Error, Intent, IntentRequest, LifecyclePolicy, Principal, PrincipalKind, Result, SlaDefaults,
    Status, TaskView, Timestamp, WaitingReason,
};
use crate::store::postgres::{PgStore, PostgresOptions};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    Change, ChangeFn, CommitSink, Durability, IdempotencyClaim, KeyRecord, NewKey, Store, Target,
    TimerFn,
};
use hub::Hub;
use notify::{NotifyKind, NotifySettings, queue_notifications};

/// Settings the engine applies to every request.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// Who gets a human task when the agent names no assignees. Empty means only
    /// admins see such tasks.
    pub default_assignees: Vec<String>,
    /// Reminder, escalation and timeout defaults for what requests leave out.
    pub sla: SlaDefaults,
    /// Where notifications go, and how they are retried.
    pub notify: NotifySettings,
}

/// How long a successful key lookup is trusted before the database is asked again.
/// Revocations made through this engine, or through another instance on the same
/// PostgreSQL database, take effect at once; this bounds how long a revocation
/// made any other way (another process on the same SQLite file) takes.
const KEY_CACHE_TTL: Duration = Duration::from_secs(10);
const KEY_CACHE_LIMIT: usize = 10_000;

/// How many events one database read returns at most.
const PAGE: usize = 500;

/// A principal by key hash, with when it was looked up and the revocation
/// generation it was looked up in (a revocation since makes it stale).
type CachedKey = (Principal, Instant, u64);

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    clock: Arc<dyn Clock>,
    settings: Arc<EngineSettings>,
    key_cache: Arc<Mutex<HashMap<String, CachedKey>>>,
    /// The last answer of the database to `/health`.
    database_probe: Arc<tokio::sync::Mutex<health::DatabaseProbe>>,
    /// What firing a timer does, handed to the store with each batch.
    fire_timer: TimerFn,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> Self {
        let settings = Arc::new(settings);
        Self {
            store,
            hub,
            clock,
            fire_timer: Engine::timer_fn(settings.clone()),
            settings,
            key_cache: Arc::new(Mutex::new(HashMap::new())),
            database_probe: Arc::default(),
        }
    }

    /// An engine on the configured database: the embedded SQLite file, or a
    /// PostgreSQL database shared with other instances.
    pub async fn open(
        database: &DatabaseLocation,
        durability: Durability,
        postgres: &PostgresOptions,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> Result<Engine> {
        match database {
            DatabaseLocation::Sqlite(path) => {
                Engine::open_sqlite(path, durability, clock, settings)
            }
            DatabaseLocation::Postgres(url) => {
                let hub = Arc::new(Hub::default());
                let store = PgStore::open(
                    url.secret(),
                    postgres,
                    durability,
                    clock.clone(),
                    hub.clone(),
                )
                .await?;
                Ok(Engine::new(Arc::new(store), hub, clock, settings))
            }
        }
    }

    /// An engine on the embedded SQLite database at `path`.
    pub fn open_sqlite(
        path: &Path,
        durability: Durability,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
    ) -> Result<Engine> {
        let hub = Arc::new(Hub::default());
        let store = SqliteStore::open(path, durability, clock.clone(), hub.clone())?;
        Ok(Engine::new(Arc::new(store), hub, clock, settings))
    }

    pub fn storage_backend(&self) -> &'static str {
        self.store.backend()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn close(&self) {
        self.store.close().await;
    }

    /// Finds the principal behind an API key.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        let hash = keys::hash_secret(secret);
        let generation = *self.hub.revocations.borrow();
        if let Ok(cache) = self.key_cache.lock()
            && let Some((principal, seen, cached_in)) = cache.get(&hash)
            && seen.elapsed() < KEY_CACHE_TTL
            && *cached_in == generation
        {
            return Ok(principal.clone());
        }
        let record = self
            .store
            .key_by_hash(&hash)
            .await?
            .filter(|record| record.revoked_at.is_none())
            .ok_or_else(|| Error::unauthorized("the API key is not valid (unknown or revoked)"))?;
        // A revocation that committed while we read must not be undone by caching
        // what we read before it.
        let unchanged = *self.hub.revocations.borrow() == generation;
        if unchanged && let Ok(mut cache) = self.key_cache.lock() {
            if cache.len() >= KEY_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(hash, (record.principal.clone(), Instant::now(), generation));
        }
        Ok(record.principal)
    }

    /// Creates a key for a new principal. Returns the record and the secret, which is
    /// shown this once and never stored.
    pub async fn create_key(
        &self,
        caller: &Principal,
        principal: Principal,
        label: Option<String>,
    ) -> Result<(KeyRecord, String)> {
        require_admin(caller, "create keys")?;
        self.insert_key(principal, label).await
    }

    async fn insert_key(
        &self,
        principal: Principal,
        label: Option<String>,
    ) -> Result<(KeyRecord, String)> {
        let secret = keys::generate_secret()?;
        let record = KeyRecord {
            key_id: keys::generate_key_id()?,
            key_prefix: keys::display_prefix(&secret),
            principal,
            label: label.filter(|l| !l.trim().is_empty()),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.store
            .insert_key(NewKey {
                record: record.clone(),
                key_hash: keys::hash_secret(&secret),
            })
            .await?;
        Ok((record, secret))
    }

    /// Creates the first admin key if the database has no active one, so the
    /// machine's own CLI and inbox can connect without set-up.
    pub async fn bootstrap_admin_key(&self) -> Result<Option<String>> {
        let has_admin = self
            .store
            .keys()
            .await?
            .iter()
            .any(|key| key.principal.is_admin() && key.revoked_at.is_none());
        if has_admin {
            return Ok(None);
        }
        let admin = Principal::new(PrincipalKind::Admin, "local", vec![])?;
        let (_, secret) = self
            .insert_key(admin, Some("created on first start".into()))
            .await?;
        Ok(Some(secret))
    }

    pub async fn list_keys(&self, caller: &Principal) -> Result<Vec<KeyRecord>> {
        require_admin(caller, "list keys")?;
        self.store.keys().await
    }

    pub async fn revoke_key(&self, caller: &Principal, key_id: &str) -> Result<()> {
        require_admin(caller, "revoke keys")?;
        if !self.store.revoke_key(key_id, self.clock.now()).await? {
            return Err(Error::not_found("active key", key_id));
        }
        if let Ok(mut cache) = self.key_cache.lock() {
            cache.clear();
        }
        self.hub.keys_revoked();
        Ok(())
    }

    /// Resolves when the key with this hash is revoked (through this server or,
    /// on PostgreSQL, another instance), so open streams end as soon as their key
    /// stops working.
    pub fn key_revoked(
        &self,
        key_hash: String,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut generations = self.hub.revocations.subscribe();
        let store = self.store.clone();
        async move {
            while generations.changed().await.is_ok() {
                let still_valid = matches!(
                    store.key_by_hash(&key_hash).await,
                    Ok(Some(record)) if record.revoked_at.is_none()
                );
                if !still_valid {
                    return;
                }
            }
            // The engine is gone; shutdown ends the stream instead.
            std::future::pending::<()>().await
        }
    }

    /// `POST /v1/intents`.
    pub async fn create_intent(
        &self,
        sender: &Principal,
        body: &Value,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Value> {
        let request = IntentRequest::parse(body, sender)?;
        let intent = new_intent(&self.settings, request, self.clock.now())?;
        let settings = self.settings.clone();
        let apply: ChangeFn = Box::new(move |change: &mut Change| {
            open_intent(change, &settings)?;
            Ok(json!({
                "ok": true,
                "intent_id": change.intent.intent_id,
                "status": change.intent.status,
                "created_at": change.intent.created_at,
            }))
        });
        let written = self
            .store
            .write_intent(Target::New(Box::new(intent)), claim, apply)
            .await?;
        Ok(written.response)
    }

    /// Loads an intent the caller may read.
    pub async fn intent(&self, reader: &Principal, intent_id: &str) -> Result<Intent> {
        let intent = self
            .store
            .intent(intent_id)
            .await?
            .ok_or_else(|| Error::not_found("intent", intent_id))?;
        if !may_read(reader, &intent) {
            return Err(Error::forbidden(format!(
                "{} may not read intent {intent_id}",
                reader.identity
            )));
        }
        Ok(intent)
    }

    /// `GET /v1/intents/{id}/events?since=N`: every event after `since`.
    pub async fn events(
        &self,
        reader: &Principal,
        intent_id: &str,
        since: u64,
    ) -> Result<Vec<crate::domain::Event>> {
        self.intent(reader, intent_id).await?;
        let mut events = Vec::new();
        let mut after = since;
        loop {
            let page = self.store.events(intent_id, after, PAGE).await?;
            let full = page.len() == PAGE;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            events.extend(page);
            if !full {
                return Ok(events);
            }
        }
    }

    /// `GET /v1/me/tasks`: what the caller may decide right now.
    pub async fn my_tasks(&self, reviewer: &Principal) -> Result<Vec<TaskView>> {
        let snapshot = self.store.waiting_tasks(holdings_of(reviewer)).await?;
        Ok(snapshot.tasks.iter().filter_map(TaskView::of).collect())
    }

    /// Forgets idempotency records older than `max_age_seconds` (kept at least 24 h).
    pub async fn prune_idempotency(&self, max_age_seconds: i64) -> Result<u64> {
        let before = self
            .clock
            .now()
            .plus_seconds(-max_age_seconds.max(24 * 3600));
        self.store.prune_idempotency(before).await
    }
}

/// A new intent for `request`, with its lifecycle policy resolved against the
/// server's defaults; nothing is stored until [`open_intent`] runs on it.
pub(crate) fn new_intent(
    settings: &EngineSettings,
    request: IntentRequest,
    now: Timestamp,
) -> Result<Intent> {
    let task_type = request.human_task.as_ref().map(|task| task.task_type);
    let sla = task_type.map(|task_type| settings.sla.for_task(task_type));
    let lifecycle = LifecyclePolicy::resolve(
        &request.timing,
        &PolicyContext {
            started_at: now,
            task_type,
            allowed_outcomes: request
                .human_task
                .as_ref()
                .map_or(&[], |task| task.allowed_outcomes.as_slice()),
            defaults: sla.as_ref(),
        },
    )?;
    Ok(Intent {
        intent_id: uuid::Uuid::now_v7().to_string(),
        intent_type: request.intent_type,
        correlation_id: request.correlation_id,
        from_agent: request.from_agent,
        to_agent: request.to_agent,
        reply_to: request.reply_to,
        payload: request.payload,
        status: Status::Created,
        waiting_reason: None,
        created_at: now,
        updated_at: now,
        human_task: request.human_task,
        assignees: vec![],
        assigned_at: None,
        due_at: lifecycle.timeout.as_ref().map(|timeout| timeout.at),
        remind_count: 0,
        escalation_stage: 0,
        result: None,
        lifecycle,
        workflow: None,
        step_of: None,
        votes: vec![],
        last_seq: 0,
        last_cursor: 0,
    })
}

/// Submits a new intent inside its creating transaction: a human task goes to
/// its assignees (or the default ones) with notifications, agent work onto its
/// agent's stream, and the lifecycle timers start.
pub(crate) fn open_intent(change: &mut Change, settings: &EngineSettings) -> Result<()> {
    let now = change.now;
    change.intent.created_at = now;
    let actor = change.intent.from_agent.clone();
    let mut created_details = json!({
        "intent_type": change.intent.intent_type,
        "correlation_id": change.intent.correlation_id,
        "to_agent": change.intent.to_agent,
    });
    if let Some(link) = &change.intent.step_of {
        created_details["step_of"] = json!(link);
    }
    change.record(CREATED, &actor, created_details);
    change.intent.transition(Status::Submitted, None)?;
    change.record(SUBMITTED, &actor, json!({}));
    match change.intent.human_task.clone() {
        Some(task) => {
            let assignees = if task.assignees.is_empty() {
                settings.default_assignees.clone()
            } else {
                task.assignees.clone()
            };
            change
                .intent
                .transition(Status::Waiting, Some(WaitingReason::WaitingForHuman))?;
            change.intent.assignees = assignees.clone();
            change.intent.assigned_at = Some(now);
            change.record(
                HUMAN_TASK_ASSIGNED,
                &actor,
                json!({ "human_task": task, "assignees": assignees }),
            );
            queue_notifications(change, &settings.notify, &assignees, NotifyKind::Assigned);
        }
        None => {
            if let Some(agent) = change.intent.to_agent.clone() {
                change.deliver_to_agent(&agent, SUBMITTED);
            }
        }
    }
    for timer in change.intent.lifecycle.initial_timers(now) {
        change.schedule(timer);
    }
    Ok(())
}

pub fn require_admin(caller: &Principal, action: &str) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(Error::forbidden(format!("only admin keys may {action}")))
    }
}

/// The assignee entries a principal holds, for filtering tasks in the store;
/// `None` means everything (admins).
pub fn holdings_of(principal: &Principal) -> Option<Vec<String>> {
    if principal.is_admin() {
        return None;
    }
    let mut holdings: Vec<String> = principal
        .teams
        .iter()
        .map(|team| format!("{}{team}", crate::domain::principal::TEAM_PREFIX))
        .collect();
    if principal.kind == PrincipalKind::Reviewer {
        holdings.push(principal.identity.clone());
    }
    Some(holdings)
}

/// Who may read an intent: its sender, recipient and reply owner, its reviewers,
/// whoever decided it, and admins.
pub fn may_read(reader: &Principal, intent: &Intent) -> bool {
    let identity = reader.identity.as_str();
    let decided_by = intent
        .result
        .as_ref()
        .and_then(|result| result.get("decided_by"))
        .and_then(Value::as_str);
    reader.is_admin()
        || intent.from_agent == identity
        || intent.to_agent.as_deref() == Some(identity)
        || intent.reply_to.as_deref() == Some(identity)
        || decided_by == Some(identity)
        || intent
            .votes
            .iter()
            .any(|vote| vote.voter.eq_ignore_ascii_case(identity))
        || (intent.human_task.is_some()
            && intent.assignees.iter().any(|a| reader.holds_assignee(a)))
}
