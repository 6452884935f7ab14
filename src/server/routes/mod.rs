//! One file per area; handlers only translate HTTP to engine calls and back.

pub mod agents;
pub mod inbox;
pub mod intents;
pub mod keys;
pub mod meta;
pub mod scenarios;
pub mod tasks;
