//! Live updates across instances. Every write transaction that hands out commit
//! positions ends with `NOTIFY`, carrying the instance, the cursor range and the
//! earliest timer and outbox send it queued. PostgreSQL delivers notifications
//! only for committed transactions, in commit order, to every listening
//! instance, the writing one included.
//!
//! Each instance publishes to its streams only from here, strictly in cursor
//! order: its own commits from memory (the writer leaves them in the [`Stash`]
//! before committing), other instances' commits read back from the database. A
//! range it missed (its listening connection dropped) is read from the database
//! before anything after it, so no subscriber ever sees a gap or a repeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Row};

use super::{Connector, pooled, storage_error};
use crate::domain::{Result, Timestamp};
use crate::store::rows::{self, Damage, EVENT_COLUMNS};
use crate::store::{AgentDelivery, CommitSink, Committed, Interest};

/// The notification that a key was revoked.
pub const KEYS_REVOKED: &str = "keys";

/// Cursor ranges read back from the database per query.
const PAGE: i64 = 1000;
/// How often the published position is compared with the database's, so a
/// notification lost without the connection failing (or whose read failed) is
/// published anyway, late rather than never.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);
/// The longest wait between attempts to re-establish the listening connection.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);
/// How long the listening connection has to answer its `LISTEN`, said again
/// with each catch-up. TCP keepalives find a peer that is gone, but not a proxy
/// in between (a TCP load balancer, a sidecar) that holds the connection open
/// while passing nothing on: it answers the keepalives itself, and the
/// instance would wait for notifications for ever while `/health` said it
/// listened.
const LISTENER_ANSWERS_WITHIN: Duration = Duration::from_secs(3);

/// This instance's own commits, by their first cursor, waiting for their
/// notification to come round.
#[derive(Default)]
pub struct Stash(Mutex<HashMap<u64, Vec<Arc<Committed>>>>);

impl Stash {
    pub fn put(&self, first_cursor: u64, batch: Vec<Arc<Committed>>) {
        if let Ok(mut stash) = self.0.lock() {
            stash.insert(first_cursor, batch);
        }
    }

    pub fn take(&self, first_cursor: u64) -> Option<Vec<Arc<Committed>>> {
        self.0.lock().ok()?.remove(&first_cursor)
    }

    /// Drops batches starting in `from..=to`: they were published from the database.
    fn forget(&self, from: u64, to: u64) {
        if let Ok(mut stash) = self.0.lock() {
            stash.retain(|first, _| *first < from || *first > to);
        }
    }
}

/// What a commit's notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub instance: String,
    pub first: u64,
    pub last: u64,
    pub earliest_timer: Option<Timestamp>,
    pub outbox_due: Option<Timestamp>,
    /// Whether the commit queued agent deliveries (most do not, and then other
    /// instances need not look for them).
    pub deliveries: bool,
    /// The intents the commit changed, when few enough to list, so instances
    /// with nobody following them need not read the commit back at all.
    pub intents: Option<Vec<String>>,
}

/// At most this many intents are named in a notification (which PostgreSQL caps
/// at 8,000 bytes); a commit touching more says `*`.
const MAX_NAMED_INTENTS: usize = 150;

impl Notice {
    /// The notice for a commit of `committed`, numbered `first..=last`.
    pub fn of(instance: &str, first: u64, last: u64, committed: &[Arc<Committed>]) -> Notice {
        let mut intents: Vec<String> = committed.iter().map(|c| c.intent_id.clone()).collect();
        intents.sort();
        intents.dedup();
        Notice {
            instance: instance.to_string(),
            first,
            last,
            earliest_timer: committed.iter().filter_map(|c| c.earliest_timer).min(),
            outbox_due: committed.iter().filter_map(|c| c.outbox_due).min(),
            deliveries: committed.iter().any(|c| !c.deliveries.is_empty()),
            intents: (intents.len() <= MAX_NAMED_INTENTS).then_some(intents),
        }
    }

    /// Takes `next` into this notice when both are other instances' commits
    /// (not those of `own`, which are published from memory) and `next`
    /// follows on without a gap, so that one read-back serves both; hands
    /// `next` back when it cannot.
    fn absorb(&mut self, next: Notice, own: &str) -> Option<Notice> {
        if self.instance == own
            || next.instance == own
            || self.last.checked_add(1) != Some(next.first)
        {
            return Some(next);
        }
        let earliest =
            |one: Option<Timestamp>, other: Option<Timestamp>| one.into_iter().chain(other).min();
        self.last = next.last;
        self.earliest_timer = earliest(self.earliest_timer, next.earliest_timer);
        self.outbox_due = earliest(self.outbox_due, next.outbox_due);
        self.deliveries |= next.deliveries;
        self.intents = match (self.intents.take(), next.intents) {
            (Some(mut intents), Some(more)) => {
                intents.extend(more);
                intents.sort();
                intents.dedup();
                (intents.len() <= MAX_NAMED_INTENTS).then_some(intents)
            }
            _ => None,
        };
        None
    }

    pub fn payload(&self) -> String {
        let time = |at: Option<Timestamp>| at.map_or_else(|| "-".to_string(), |at| at.to_string());
        format!(
            "{} {} {} {} {} {} {}",
            self.instance,
            self.first,
            self.last,
            time(self.earliest_timer),
            time(self.outbox_due),
            u8::from(self.deliveries),
            self.intents
                .as_ref()
                .map_or_else(|| "*".to_string(), |ids| ids.join(","))
        )
    }

    pub fn parse(payload: &str) -> Option<Notice> {
        let mut parts = payload.split(' ');
        let mut next = || parts.next();
        let time = |text: &str| match text {
            "-" => Some(None),
            text => Timestamp::parse(text).ok().map(Some),
        };
        let notice = Notice {
            instance: next()?.to_string(),
            first: next()?.parse().ok()?,
            last: next()?.parse().ok()?,
            earliest_timer: time(next()?)?,
            outbox_due: time(next()?)?,
            deliveries: match next()? {
                "0" => false,
                "1" => true,
                _ => return None,
            },
            intents: match next()? {
                "*" => None,
                "" => Some(Vec::new()),
                ids => Some(ids.split(',').map(str::to_string).collect()),
            },
        };
        // Cursors are BIGINTs: a larger one was not sent by signoff.
        let in_range = notice.first <= notice.last && i64::try_from(notice.last).is_ok();
        (next().is_none() && in_range).then_some(notice)
    }
}

pub struct FeedSetup {
    pub connector: Connector,
    pub pool: Pool,
    pub channel: String,
    pub instance: String,
    pub sink: Arc<dyn CommitSink>,
    pub stash: Arc<Stash>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Whether the listening connection is up and has caught up with the
    /// database since it came up: while the connection is down, this instance's
    /// streams fall behind (its own commits included, which are published
    /// when their notification comes round), caught up only between tries to
    /// listen again.
    pub listening: Arc<AtomicBool>,
}

struct Feed {
    setup: FeedSetup,
    /// The newest cursor published to this instance's streams.
    published: u64,
    listener: Listener,
    notices: mpsc::UnboundedReceiver<Option<String>>,
}

/// The listening connection: its client, and the task reading its messages,
/// ended when the connection is replaced (a connection that stopped answering
/// would otherwise keep it waiting for ever).
struct Listener {
    client: tokio_postgres::Client,
    reading: tokio::task::AbortHandle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reading.abort();
    }
}

/// Starts listening, then follows the notifications on a task of its own.
/// Listening starts before the published position is read, so nothing committed
/// in between is missed.
pub async fn start(setup: FeedSetup) -> Result<tokio::task::JoinHandle<()>> {
    let (listener, notices) = open_listener(&setup.connector, &setup.channel).await?;
    let published = latest_cursor(&setup.pool).await?;
    setup.listening.store(true, Ordering::Relaxed);
    let feed = Feed {
        setup,
        published,
        listener,
        notices,
    };
    Ok(tokio::spawn(feed.run()))
}

/// A connection listening on `channel`, and its notifications' payloads (`None`
/// when the connection is lost).
async fn open_listener(
    connector: &Connector,
    channel: &str,
) -> Result<(Listener, mpsc::UnboundedReceiver<Option<String>>)> {
    let (client, mut connection) = connector.open().await?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let reading = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if sender
                        .send(Some(notification.payload().to_string()))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!("the PostgreSQL listening connection failed: {err}");
                    break;
                }
            }
        }
        let _ = sender.send(None);
    });
    let listener = Listener {
        client,
        reading: reading.abort_handle(),
    };
    listener.listen(channel).await?;
    Ok((listener, receiver))
}

impl Listener {
    /// `LISTEN`s on `channel`, within [`LISTENER_ANSWERS_WITHIN`]. Said again
    /// on a connection that listens already, it changes nothing but proves
    /// the connection answers, and the session's last statement (its `query`
    /// in `pg_stat_activity`) keeps saying what it is for.
    async fn listen(&self, channel: &str) -> Result<()> {
        let statement = format!("LISTEN {channel}");
        match tokio::time::timeout(
            LISTENER_ANSWERS_WITHIN,
            self.client.batch_execute(&statement),
        )
        .await
        {
            Ok(answer) => answer.map_err(storage_error),
            Err(_) => Err(storage_error(format!(
                "no answer within {LISTENER_ANSWERS_WITHIN:?}"
            ))),
        }
    }
}

async fn latest_cursor(pool: &Pool) -> Result<u64> {
    let client = pooled(pool).await?;
    let row = client
        .query_one("SELECT cursor FROM chain_head WHERE id = 1", &[])
        .await
        .map_err(storage_error)?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Reads [`AgentDelivery`] from `agent, seq, intent_id, event_type, status, at`.
pub fn delivery(row: &Row) -> std::result::Result<AgentDelivery, Damage> {
    Ok(AgentDelivery {
        agent: rows::text(row, 0, "agent")?,
        seq: rows::unsigned(row, 1, "seq")?,
        intent_id: rows::text(row, 2, "intent_id")?,
        event_type: rows::text(row, 3, "event_type")?,
        status: rows::status(row, 4)?,
        at: rows::timestamp(row, 5, "at")?,
    })
}

impl Feed {
    async fn run(mut self) {
        let mut audit = tokio::time::interval(CATCH_UP_EVERY);
        audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                received = self.notices.recv() => received,
                _ = audit.tick() => {
                    if !self.listener_answers().await {
                        self.reconnect().await;
                        continue;
                    }
                    // A catch-up that fails here (a pool too busy to lend a
                    // connection in time) does not make the listener deaf; one
                    // that succeeds ends a failed catch-up after a reconnect.
                    if self.catch_up().await {
                        self.setup.listening.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
            };
            match received {
                Some(Some(payload)) => {
                    let (payloads, lost) = self.with_the_queued(payload);
                    self.on_payloads(payloads).await;
                    if lost {
                        self.reconnect().await;
                    }
                }
                Some(None) | None => self.reconnect().await,
            }
        }
    }

    /// `first` and the notifications queued behind it, and whether the
    /// listening connection was lost after them.
    fn with_the_queued(&mut self, first: String) -> (Vec<String>, bool) {
        let mut payloads = vec![first];
        loop {
            match self.notices.try_recv() {
                Ok(Some(payload)) => payloads.push(payload),
                Err(mpsc::error::TryRecvError::Empty) => return (payloads, false),
                Ok(None) | Err(mpsc::error::TryRecvError::Disconnected) => return (payloads, true),
            }
        }
    }

    /// Publishes the commits the notifications name, in order (a key's
    /// revocation among them takes effect at once, before the commits queued
    /// ahead of it: stricter, never laxer). Other instances' commits that
    /// follow on one another are read back together: when this instance falls
    /// behind, one read then serves many of them, so it catches up instead of
    /// the queue growing.
    async fn on_payloads(&mut self, payloads: Vec<String>) {
        let mut notices: Vec<Notice> = Vec::new();
        for payload in payloads {
            if payload == KEYS_REVOKED {
                self.setup.sink.keys_revoked();
                continue;
            }
            let Some(notice) = Notice::parse(&payload) else {
                tracing::warn!("ignoring a malformed commit notification: {payload}");
                continue;
            };
            let apart = match notices.last_mut() {
                Some(last) => last.absorb(notice, &self.setup.instance),
                None => Some(notice),
            };
            notices.extend(apart);
        }
        for notice in notices {
            if let Err(err) = self.on_notice(notice).await {
                tracing::warn!("could not publish a commit from the database: {err}");
            }
        }
    }

    async fn on_notice(&mut self, notice: Notice) -> Result<()> {
        let own_instance = notice.instance == self.setup.instance;
        if !own_instance {
            // Another instance's timers and notifications may be due before
            // this one's workers planned to wake, whether its events are read
            // below, fail to be, or were already (a catch-up's rows say
            // nothing of them). This instance's writer woke them for its own.
            self.wake(notice.earliest_timer, notice.outbox_due);
        }
        if notice.last <= self.published {
            // Published already, from the database; a batch of this instance's
            // own left for it is not needed any more (only after the database
            // went back in time can one still be there).
            if own_instance {
                self.setup.stash.take(notice.first);
            }
            return Ok(());
        }
        // PostgreSQL notifies only after the commit, so a notice never names a
        // position the database does not hold yet; one that does was not sent
        // by signoff, and following it would read empty pages for ever. Only a
        // long range (rare: it follows missed notifications) is checked.
        if notice.last.saturating_sub(self.published) > PAGE as u64
            && notice.last > latest_cursor(&self.setup.pool).await?
        {
            tracing::warn!(
                ?notice,
                "ignoring a notification of commits the database does not hold"
            );
            return Ok(());
        }
        if notice.first > self.published.saturating_add(1) {
            self.publish_from_database(notice.first - 1, Reading::All(true))
                .await?;
        }
        let own = own_instance
            .then(|| self.setup.stash.take(notice.first))
            .flatten();
        if let Some(batch) = own {
            self.setup.sink.committed(&batch);
            self.published = notice.last;
            return Ok(());
        }
        let interest = match &notice.intents {
            Some(intents) => self.setup.sink.interest(intents, notice.deliveries),
            None => Interest::Everything,
        };
        // What nobody here follows now is not read: a stream that starts later
        // reads it from the database, since it committed before this check.
        match interest {
            Interest::Nothing => {}
            Interest::Intents(intents) => {
                self.publish_from_database(notice.last, Reading::Events(intents))
                    .await?;
            }
            Interest::Everything => {
                self.publish_from_database(notice.last, Reading::All(notice.deliveries))
                    .await?;
            }
        }
        self.published = notice.last;
        Ok(())
    }

    /// Whether the listening connection answers its `LISTEN`, said again, in
    /// time; says why in the log when it does not.
    async fn listener_answers(&self) -> bool {
        let Err(err) = self.listener.listen(&self.setup.channel).await else {
            return true;
        };
        tracing::warn!(
            "the PostgreSQL listening connection does not answer ({err}); listening on a new one"
        );
        false
    }

    /// Re-establishes the listening connection, then catches up from the
    /// database with whatever committed while it was down.
    async fn reconnect(&mut self) {
        self.setup.listening.store(false, Ordering::Relaxed);
        let mut pause = Duration::from_millis(100);
        loop {
            tokio::time::sleep(pause).await;
            match open_listener(&self.setup.connector, &self.setup.channel).await {
                Ok((listener, notices)) => {
                    self.listener = listener;
                    self.notices = notices;
                    break;
                }
                Err(err) => {
                    tracing::warn!("cannot listen for other instances' commits yet: {err}");
                    // Meanwhile the streams move on, late, with what the
                    // database holds, and this instance's own batches do not
                    // pile up in the stash.
                    self.catch_up().await;
                    pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                }
            }
        }
        let caught_up = self.catch_up().await;
        self.setup.listening.store(caught_up, Ordering::Relaxed);
        // Timers or notifications may have come due meanwhile, and keys may have
        // been revoked: open streams check theirs again.
        let now = Some(self.setup.clock.now());
        self.wake(now, now);
        self.setup.sink.keys_revoked();
        tracing::info!("listening for other instances' commits again");
    }

    /// Publishes, from the database, whatever committed that this instance has
    /// not published: after a reconnect, and every [`CATCH_UP_EVERY`] in case a
    /// notification was lost or a read of one failed. Says whether it did.
    async fn catch_up(&mut self) -> bool {
        let caught_up = match latest_cursor(&self.setup.pool).await {
            Ok(latest) => {
                self.follow_a_rewound_head(latest);
                self.publish_from_database(latest, Reading::All(true)).await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = &caught_up {
            tracing::warn!("could not catch up on commits from the database: {err}");
        }
        caught_up.is_ok()
    }

    /// Follows a database whose newest cursor (`latest`) is behind what this
    /// instance published: it was restored from a backup, or lost its last
    /// commits to a crash under `durability = "normal"`. It hands those cursors
    /// out again, so publishing starts over from `latest` rather than ignoring
    /// every new commit as already published.
    fn follow_a_rewound_head(&mut self, latest: u64) {
        if latest >= self.published {
            return;
        }
        tracing::error!(
            published = self.published,
            latest,
            "the database holds fewer commits than were published; was it restored?"
        );
        self.published = latest;
        self.setup.stash.forget(latest.saturating_add(1), u64::MAX);
    }

    /// Wakes this instance's scheduler and notification sender for work another
    /// instance queued.
    fn wake(&self, earliest_timer: Option<Timestamp>, outbox_due: Option<Timestamp>) {
        if earliest_timer.is_none() && outbox_due.is_none() {
            return;
        }
        self.setup.sink.committed(&[Arc::new(Committed {
            intent_id: String::new(),
            events: Vec::new(),
            deliveries: Vec::new(),
            earliest_timer,
            outbox_due,
        })]);
    }

    /// Publishes every commit after the published position up to `to`, read from
    /// the database page by page: as much of them as `reading` says.
    async fn publish_from_database(&mut self, to: u64, reading: Reading) -> Result<()> {
        while self.published < to {
            let from = self.published.saturating_add(1);
            let until = to.min(self.published.saturating_add(PAGE as u64));
            let batch = read_range(&self.setup.pool, from, until, &reading).await?;
            self.setup.stash.forget(from, until);
            if !batch.is_empty() {
                self.setup.sink.committed(&batch);
            }
            self.published = until;
        }
        Ok(())
    }
}

/// How much of a range of commits to read back.
enum Reading {
    /// Every event with its task, and the agent deliveries if `true`.
    All(bool),
    /// Only these intents' events, without their tasks.
    Events(Vec<String>),
}

/// The commits in cursor range `from..=to`, one per run of consecutive events
/// of an intent, with as much as `reading` asks for.
async fn read_range(
    pool: &Pool,
    from: u64,
    to: u64,
    reading: &Reading,
) -> Result<Vec<Arc<Committed>>> {
    let client = pooled(pool).await?;
    let (from, to) = (from as i64, to as i64);
    // `$3` names the intents to read, without tasks; NULL reads everything.
    let events = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, CASE WHEN $3::text[] IS NULL THEN task END FROM events
             WHERE cursor BETWEEN $1 AND $2 AND ($3::text[] IS NULL OR intent_id = ANY($3))
             ORDER BY cursor"
        ))
        .await
        .map_err(storage_error)?;
    let deliveries = client
        .prepare_cached(
            "SELECT d.agent, d.seq, d.intent_id, d.event_type,
                    COALESCE(e.status, i.status), d.at, d.commit_cursor
             FROM agent_deliveries d
             JOIN intents i ON i.intent_id = d.intent_id
             LEFT JOIN events e ON e.cursor = d.commit_cursor
             WHERE d.commit_cursor BETWEEN $1 AND $2 ORDER BY d.commit_cursor, d.seq",
        )
        .await
        .map_err(storage_error)?;
    let (only, with_deliveries) = match reading {
        Reading::All(deliveries) => (None, *deliveries),
        Reading::Events(intents) => (Some(intents), false),
    };
    let range: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&from, &to, &only];
    let (events, deliveries) = futures::try_join!(client.query(&events, &range), async {
        match with_deliveries {
            true => client.query(&deliveries, &range[..2]).await,
            false => Ok(Vec::new()),
        }
    })
    .map_err(storage_error)?;
    let events = decode_readable(&events, "an event", rows::stored_event);
    let deliveries = decode_readable(&deliveries, "an agent delivery", |row| {
        Ok((
            delivery(row)?,
            rows::unsigned::<u64>(row, 6, "commit_cursor")?,
        ))
    });
    let mut batch: Vec<Committed> = Vec::new();
    for stored in events {
        match batch.last_mut() {
            Some(last) if last.intent_id == stored.event.intent_id => last.events.push(stored),
            _ => batch.push(Committed {
                intent_id: stored.event.intent_id.clone(),
                events: vec![stored],
                deliveries: Vec::new(),
                earliest_timer: None,
                outbox_due: None,
            }),
        }
    }
    for (delivery, commit_cursor) in deliveries {
        // The run of the delivery's intent that its write ended with.
        let owner = batch.iter_mut().rev().find(|committed| {
            committed.intent_id == delivery.intent_id
                && committed
                    .events
                    .first()
                    .is_some_and(|first| first.cursor <= commit_cursor)
        });
        match owner {
            Some(committed) => committed.deliveries.push(delivery),
            None => batch.push(Committed {
                intent_id: delivery.intent_id.clone(),
                events: Vec::new(),
                deliveries: vec![delivery],
                earliest_timer: None,
                outbox_due: None,
            }),
        }
    }
    Ok(batch.into_iter().map(Arc::new).collect())
}

/// What can be decoded of `found`; damaged rows are logged and skipped. The
/// feed has to move past a row it cannot read, or nothing after it would ever
/// be published. Live followers miss the damaged event (the log names it);
/// reading it from the database later reports the damage.
fn decode_readable<T>(
    found: &[Row],
    what: &str,
    decode: impl Fn(&Row) -> std::result::Result<T, Damage>,
) -> Vec<T> {
    found
        .iter()
        .filter_map(|row| match decode(row) {
            Ok(decoded) => Some(decoded),
            Err(damage) => {
                tracing::error!("not publishing {what} that cannot be read: {damage}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(instance: &str, first: u64, last: u64, intents: Option<&[&str]>) -> Notice {
        Notice {
            instance: instance.into(),
            first,
            last,
            earliest_timer: None,
            outbox_due: None,
            deliveries: false,
            intents: intents.map(|ids| ids.iter().map(|id| id.to_string()).collect()),
        }
    }

    #[test]
    fn other_instances_commits_that_follow_on_are_read_back_together() {
        let at = |text: &str| Some(Timestamp::parse(text).unwrap());
        let mut merged = Notice {
            earliest_timer: at("2026-12-05T12:00:00Z"),
            ..notice("b", 5, 7, Some(&["i2", "i1"]))
        };
        let next = Notice {
            earliest_timer: at("2026-12-05T11:00:00Z"),
            outbox_due: at("2026-12-05T13:00:00Z"),
            deliveries: true,
            ..notice("c", 8, 9, Some(&["i1", "i3"]))
        };
        assert_eq!(merged.absorb(next, "a"), None);
        assert_eq!(
            merged,
            Notice {
                instance: "b".into(),
                first: 5,
                last: 9,
                earliest_timer: at("2026-12-05T11:00:00Z"),
                outbox_due: at("2026-12-05T13:00:00Z"),
                deliveries: true,
                intents: Some(vec!["i1".into(), "i2".into(), "i3".into()]),
            }
        );
        // Unnamed intents (too many to list) stay unnamed, and so does a union
        // grown past the list's limit.
        assert_eq!(merged.absorb(notice("b", 10, 10, None), "a"), None);
        assert_eq!((merged.last, merged.intents.clone()), (10, None));
        let many: Vec<String> = (0..MAX_NAMED_INTENTS).map(|i| format!("x{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut listed = notice("b", 1, 1, Some(&many));
        assert_eq!(listed.absorb(notice("b", 2, 2, Some(&["y"])), "a"), None);
        assert_eq!(listed.intents, None);

        // Not merged: a gap (a commit whose notification is missing is read
        // whole, not through the named intents), or this instance's own
        // commits on either side (published from memory).
        for (first, next) in [
            (
                notice("b", 5, 7, Some(&["i1"])),
                notice("b", 9, 9, Some(&["i2"])),
            ),
            (notice("b", 5, u64::MAX, None), notice("b", 0, 0, None)),
            (
                notice("b", 5, 7, Some(&["i1"])),
                notice("a", 8, 8, Some(&["i2"])),
            ),
            (
                notice("a", 5, 7, Some(&["i1"])),
                notice("b", 8, 8, Some(&["i2"])),
            ),
        ] {
            let mut kept = first.clone();
            assert_eq!(kept.absorb(next.clone(), "a"), Some(next));
            assert_eq!(kept, first);
        }
    }

    #[test]
    fn notices_round_trip_and_refuse_garbage() {
        let notice = Notice {
            instance: "abc".into(),
            first: 5,
            last: 9,
            earliest_timer: Some(Timestamp::parse("2026-11-21T12:00:00Z").unwrap()),
            outbox_due: None,
            deliveries: true,
            intents: Some(vec!["i1".into(), "i2".into()]),
        };
        assert_eq!(Notice::parse(&notice.payload()), Some(notice.clone()));
        for intents in [None, Some(vec![])] {
            let notice = Notice {
                intents,
                ..notice.clone()
            };
            assert_eq!(Notice::parse(&notice.payload()), Some(notice));
        }
        for garbage in [
            "",
            "abc",
            "abc 9 5 - - 0 *",
            "abc 1 2 - - 0 * extra",
            "abc x 2 - - 0 *",
            "abc 1 2 soon - 0 *",
            "abc 1 2 - - maybe *",
            "abc 1 2 - - 0",
            "abc 1 9223372036854775808 - - 0 *",
            "abc 18446744073709551615 18446744073709551615 - - 0 *",
        ] {
            assert_eq!(Notice::parse(garbage), None, "{garbage:?}");
        }
    }
}
