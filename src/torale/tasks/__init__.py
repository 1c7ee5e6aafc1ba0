"""Tasks: what to watch, when, and whom to tell."""
