//! signoff: durable, asynchronous human approval for AI agents.

pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod server;
pub mod store;
pub mod tui;
