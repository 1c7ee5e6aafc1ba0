"""The engine: one run of a task — search, fetch, evaluate, decide, record (SPEC §6)."""
