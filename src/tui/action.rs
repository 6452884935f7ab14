//! Everything that can happen to the inbox (`Action`), and everything the inbox
//! asks the outside world to do (`Effect`). `update` turns the first into the
//! second; the event loop performs effects and feeds their results back in.

use crossterm::event::{KeyEvent, MouseEvent};
use serde_json::Value;

use crate::client::ClientError;
use crate::domain::{Event, Principal, TaskStreamItem, Timestamp};

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "an action is moved once from the event loop into `update`, never stored in bulk"
)]
pub enum Action {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize {
        width: u16,
        height: u16,
    },
    /// The clock moved (once a second): countdowns, undo windows, time-based views.
    Tick(Timestamp),
    Connected,
    Disconnected {
        error: String,
        retry_at: Timestamp,
    },
    Stream(TaskStreamItem),
    /// Who the inbox's key belongs to.
    Identity(Principal),
    DecisionSent {
        intent_id: String,
        result: Result<(), ClientError>,
    },
    /// The selected task's payload and history arrived.
    DetailLoaded {
        intent_id: String,
        result: Result<(Value, Vec<Event>), String>,
    },
    /// `$EDITOR` returned; `None` when it could not run.
    EditorClosed {
        text: Option<String>,
    },
    /// A line for the activity feed, e.g. "agent X resumed with outcome Y".
    Notice(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// `POST /v1/intents/{id}/resume` with `body`.
    Submit {
        intent_id: String,
        body: Value,
    },
    /// Fetch the payload and history of the task on screen.
    LoadDetail {
        intent_id: String,
    },
    /// Tell the server this reviewer opened the task (`intent.viewed`).
    MarkViewed {
        intent_id: String,
    },
    Notify {
        title: String,
        body: String,
    },
    OpenEditor {
        text: String,
    },
    /// Put text on the clipboard (OSC 52).
    Copy {
        text: String,
    },
    Quit,
}
