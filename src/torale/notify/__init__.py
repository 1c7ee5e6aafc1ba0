"""Notifications: channels and their delivery."""
