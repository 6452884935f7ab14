//! The inbox state. Only `update` changes it; `render` only reads it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use serde_json::Value;

use super::dialog::Dialog;
use super::inbox::{Inbox, MatchContext};
use super::input::LineInput;
use super::keymap::Key;
use super::settings::TuiSettings;
use crate::domain::{Event, Principal, Timestamp};

/// What has the keyboard.
#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    /// Typing a `/` filter; it applies live.
    Filter {
        input: LineInput,
    },
    Palette {
        input: LineInput,
        selected: usize,
    },
    Help {
        scroll: u16,
    },
    Dialog(Box<Dialog>),
    /// Asking before approving several marked tasks at once.
    ConfirmBulk {
        intent_ids: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Online,
    Offline { error: String, retry_at: Timestamp },
}

/// A decision in its undo window, or on its way to the server.
#[derive(Debug, Clone)]
pub struct Queued {
    pub intent_id: String,
    pub title: String,
    pub outcome: String,
    pub body: Value,
    pub send_at: Timestamp,
    pub sent: bool,
    /// Everything the reviewer typed, to reopen the dialog on undo or refusal.
    pub dialog: Box<Dialog>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Info,
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub tone: Tone,
    pub at: Timestamp,
}

/// What the detail pane shows beyond the task itself, loaded on selection.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    Loading,
    Loaded { payload: Value, events: Vec<Event> },
    Failed(String),
}

/// How many activity lines (agents resuming, decisions sent) are kept.
pub const NOTICE_LIMIT: usize = 50;

#[derive(Debug, Clone)]
pub struct State {
    pub settings: TuiSettings,
    pub server: String,
    pub inbox: Inbox,
    /// The selected task, kept by id so it survives re-sorting.
    pub selected: Option<String>,
    /// Its row index, used when the selected task disappears.
    pub selected_index: usize,
    /// First list row on screen.
    pub offset: usize,
    pub width: u16,
    pub height: u16,
    pub mode: Mode,
    /// Keys typed so far of a multi-key binding (`g` of `g g`).
    pub pending_keys: Vec<Key>,
    pub zoomed: bool,
    pub detail_scroll: u16,
    pub details: HashMap<String, Detail>,
    /// Tasks this session has reported as viewed (`intent.viewed`), once each.
    pub viewed: HashSet<String>,
    pub connection: Connection,
    pub last_sync: Option<Timestamp>,
    pub queued: Vec<Queued>,
    pub message: Option<Message>,
    pub notices: VecDeque<(Timestamp, String)>,
    pub me: Option<Principal>,
    /// Reviewer names seen on tasks or configured, for assignee completion.
    pub reviewers: BTreeSet<String>,
    pub now: Timestamp,
}

impl State {
    pub fn new(settings: TuiSettings, server: &str, now: Timestamp) -> State {
        let reviewers = settings.reviewers.iter().cloned().collect();
        State {
            settings,
            server: server.to_string(),
            inbox: Inbox::default(),
            selected: None,
            selected_index: 0,
            offset: 0,
            width: 80,
            height: 24,
            mode: Mode::Normal,
            pending_keys: Vec::new(),
            zoomed: false,
            detail_scroll: 0,
            details: HashMap::new(),
            viewed: HashSet::new(),
            connection: Connection::Connecting,
            last_sync: None,
            queued: Vec::new(),
            message: None,
            notices: VecDeque::new(),
            me: None,
            reviewers,
            now,
        }
    }

    pub fn context(&self) -> MatchContext {
        MatchContext {
            now: self.now,
            me: self.me.clone(),
        }
    }

    pub fn is_online(&self) -> bool {
        self.connection == Connection::Online
    }

    pub fn selected_row(&self) -> Option<&super::inbox::TaskRow> {
        self.selected.as_deref().and_then(|id| self.inbox.row(id))
    }

    /// The soonest deadline among all tasks.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.inbox.rows().filter_map(|row| row.task.due_at).min()
    }
}
