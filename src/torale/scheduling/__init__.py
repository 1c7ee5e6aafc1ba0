"""Scheduling: when tasks run. Backends decide *when*; the engine's run_execution decides *how*."""
