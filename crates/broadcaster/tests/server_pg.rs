//! The HTTP-level tests of `server.rs`, run on PostgreSQL: each test gets a fresh schema in the
//! server at `WA_TEST_PG_URL` (see `common/testdb.rs`). Fails, never skips, without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

const TEST_ON_POSTGRES: bool = true;

#[path = "server.rs"]
mod server;
