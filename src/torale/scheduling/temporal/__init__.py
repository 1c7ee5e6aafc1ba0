"""The Temporal backend: a Schedule per active task, a workflow per run."""
