//! The api suite (tests/api.rs) again, on PostgreSQL: every server and
//! engine it starts gets a schema of its own in the database named by
//! `SIGNOFF_TEST_PG_URL` (see tests/common/backend.rs). Without that variable
//! each test says it was skipped.

#[path = "api.rs"]
mod suite;
