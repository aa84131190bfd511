//! The end-to-end tests of `e2e.rs` (pair, send, read, reply, webhooks, media, bulk, daily
//! counters, restarts and crash recovery) with the server's database in PostgreSQL
//! (`DATABASE_URL` set to a fresh schema per test in the server at `WA_TEST_PG_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

const TEST_ON_POSTGRES: bool = true;

#[path = "e2e.rs"]
mod e2e;
