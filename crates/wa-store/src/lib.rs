//! Auth state storage: traits, SQLite, PostgreSQL, MongoDB and in-memory backends, encryption at rest.
