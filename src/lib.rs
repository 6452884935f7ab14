//! signoff: durable, asynchronous human approval for AI agents.

pub mod domain;
