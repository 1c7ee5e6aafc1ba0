"""Database: engine and sessions, ORM tables, Alembic migrations."""
