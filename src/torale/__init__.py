"""Torale: watch the web for a condition and be told when it holds."""

__version__ = "0.1.0"
