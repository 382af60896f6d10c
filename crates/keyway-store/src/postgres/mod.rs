//! The PostgreSQL backend (placeholder while the SQLite move compiles).
