//! The lifecycle suite (tests/lifecycle.rs) again, on PostgreSQL: every server and
//! engine it starts gets a schema of its own in the database named by
//! `SIGNOFF_TEST_PG_URL` (see tests/common/backend.rs). Without that variable
//! each test says it was skipped.

#[path = "lifecycle.rs"]
mod suite;
