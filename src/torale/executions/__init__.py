"""Executions: the record of each run of a task."""
