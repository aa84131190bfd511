//! The contacts, templates and campaign tests of `campaigns.rs` (scripted engine, reopened
//! database, real sends over the emulator with a kill), run on PostgreSQL: each test gets a
//! fresh schema in the server at `WA_TEST_PG_URL` (see `common/testdb.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

const TEST_ON_POSTGRES: bool = true;

#[path = "campaigns.rs"]
mod campaigns;
