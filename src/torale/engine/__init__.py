"""The engine: one run of a task — search, fetch, evaluate, decide, record (docs/api.md §6)."""
