//! Live fan-out of committed changes to open streams.
//!
//! The store calls [`Hub::committed`] after each commit and in commit order (on
//! PostgreSQL, for every instance's commits), so every subscriber sees changes in
//! the order the database has them. Subscribers that fall behind are told so (`Lagged`) and catch up from the
//! database; the hub is a fast path, never the source of truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::worker::Wakeup;
use crate::store::{AgentDelivery, CommitSink, Committed, Interest};

/// How many changes a slow subscriber may fall behind before it must re-read.
const CHANNEL_CAPACITY: usize = 256;

type Channels<T> = Mutex<HashMap<String, broadcast::Sender<T>>>;

pub struct Hub {
    intents: Channels<Arc<Committed>>,
    agents: Channels<AgentDelivery>,
    tasks: broadcast::Sender<Arc<Committed>>,
    /// Wakes the scheduler when a commit adds a timer due before its next wake-up.
    pub timers: Wakeup,
    /// Wakes the notification sender when a commit queues notifications.
    pub outbox: Wakeup,
    /// Bumped on every key revocation: it tells open streams to re-check their
    /// key, and makes cached key lookups stale.
    pub revocations: tokio::sync::watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            intents: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            tasks: broadcast::channel(4 * CHANNEL_CAPACITY).0,
            timers: Wakeup::default(),
            outbox: Wakeup::default(),
            revocations: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A receiver on a keyed channel; the channel is dropped with its last subscriber.
pub struct Subscription<T: Clone> {
    pub receiver: broadcast::Receiver<T>,
    key: String,
    hub: Arc<Hub>,
    pick: fn(&Hub) -> &Channels<T>,
}

impl<T: Clone> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Ok(mut channels) = (self.pick)(&self.hub).lock()
            && channels
                .get(&self.key)
                .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&self.key);
        }
    }
}

fn subscribe<T: Clone>(
    hub: &Arc<Hub>,
    key: &str,
    pick: fn(&Hub) -> &Channels<T>,
) -> Subscription<T> {
    let receiver = {
        let mut channels = pick(hub)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        channels
            .entry(key.to_string())
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    };
    Subscription {
        receiver,
        key: key.to_string(),
        hub: hub.clone(),
        pick,
    }
}

fn send_to<T: Clone>(channels: &Channels<T>, key: &str, value: T) {
    let channels = channels
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(sender) = channels.get(key) {
        // No receivers left is not an error: the subscription is being dropped.
        let _ = sender.send(value);
    }
}

impl Hub {
    pub fn subscribe_intent(self: &Arc<Self>, intent_id: &str) -> Subscription<Arc<Committed>> {
        subscribe(self, intent_id, |hub| &hub.intents)
    }

    pub fn subscribe_agent(self: &Arc<Self>, agent: &str) -> Subscription<AgentDelivery> {
        subscribe(self, agent, |hub| &hub.agents)
    }

    /// Every change that touches a reviewer's task list.
    pub fn subscribe_tasks(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.tasks.subscribe()
    }
}

impl CommitSink for Hub {
    fn interest(&self, intent_ids: &[String], deliveries: bool) -> Interest {
        let follows_agents = deliveries
            && self
                .agents
                .lock()
                .map_or(true, |channels| !channels.is_empty());
        // Task streams follow every task change; an open one needs it all.
        if self.tasks.receiver_count() > 0 || follows_agents {
            return Interest::Everything;
        }
        let Ok(channels) = self.intents.lock() else {
            return Interest::Everything;
        };
        let followed: Vec<String> = intent_ids
            .iter()
            .filter(|id| channels.contains_key(*id))
            .cloned()
            .collect();
        match followed.is_empty() {
            true => Interest::Nothing,
            false => Interest::Intents(followed),
        }
    }

    fn keys_revoked(&self) {
        self.revocations.send_modify(|generation| *generation += 1);
    }

    fn committed(&self, batch: &[Arc<Committed>]) {
        for committed in batch {
            if !committed.events.is_empty() {
                send_to(&self.intents, &committed.intent_id, committed.clone());
            }
            for delivery in &committed.deliveries {
                send_to(&self.agents, &delivery.agent, delivery.clone());
            }
            let touches_tasks = committed
                .events
                .iter()
                .any(|stored| stored.event.task_stream_effect().is_some());
            if touches_tasks {
                let _ = self.tasks.send(committed.clone());
            }
            if let Some(due) = committed.earliest_timer {
                self.timers.work_due(due);
            }
            if let Some(due) = committed.outbox_due {
                self.outbox.work_due(due);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn reads_back_only_what_its_streams_follow() {
        let hub = Arc::new(Hub::default());
        let changed = ids(&["a", "b", "c"]);
        assert_eq!(hub.interest(&changed, false), Interest::Nothing);
        assert_eq!(hub.interest(&changed, true), Interest::Nothing);

        let following_b = hub.subscribe_intent("b");
        let following_c = hub.subscribe_intent("c");
        assert_eq!(
            hub.interest(&changed, false),
            Interest::Intents(ids(&["b", "c"]))
        );
        assert_eq!(hub.interest(&ids(&["a"]), false), Interest::Nothing);
        drop(following_c);
        assert_eq!(
            hub.interest(&changed, false),
            Interest::Intents(ids(&["b"]))
        );

        // Deliveries matter only while an agent stream is open.
        let agent = hub.subscribe_agent("agent://x");
        assert_eq!(
            hub.interest(&changed, false),
            Interest::Intents(ids(&["b"]))
        );
        assert_eq!(hub.interest(&changed, true), Interest::Everything);
        drop(agent);

        // An open task stream needs every task change, whoever follows what.
        let tasks = hub.subscribe_tasks();
        assert_eq!(hub.interest(&ids(&["a"]), false), Interest::Everything);
        drop(tasks);
        drop(following_b);
        assert_eq!(hub.interest(&changed, false), Interest::Nothing);
    }
}
