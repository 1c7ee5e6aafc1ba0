"""Atom feeds of notifications, at URLs that carry a per-user feed token (auth/feed_tokens.py)."""
