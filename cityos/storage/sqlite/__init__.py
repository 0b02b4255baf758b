"""SQLite storage backend."""
