"""Watching pages without a model: URL targets with selectors, change and rule decisions,
snapshots of what each run read, and diffs between runs (docs/api.md §4 and §6)."""
