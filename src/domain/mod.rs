//! Pure types and rules. Nothing here performs I/O or depends on another module of
//! the crate, so every rule can be unit-tested in isolation.

pub mod audit;
pub mod error;
pub mod event;
pub mod intent;
pub mod lifecycle;
pub mod principal;
pub mod request;
pub mod task;
pub mod time;
pub mod view;
pub mod workflow;

pub use error::{Error, ErrorKind, Result};
pub use event::{Event, StoredEvent, TaskStreamEffect};
pub use intent::{Intent, Status, WaitingReason};
pub use lifecycle::{
    Fallback, LifecycleInput, LifecyclePolicy, SlaDefaults, TimerKind, TimerSpec, TimingRequest,
};
pub use principal::{Principal, PrincipalKind};
pub use request::IntentRequest;
pub use task::{HumanTask, TaskResultInput, TaskType, ValidDecision, Verdict, verdict_of};
pub use time::Timestamp;
pub use view::{
    TaskReminder, TaskRemoval, TaskSnapshot, TaskStreamItem, TaskUpsert, TaskView, Thread,
    ThreadStatus, TimelineEntry,
};
