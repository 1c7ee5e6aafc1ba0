"""Torale: watch the web for a condition and be told when it holds.

The SDK's names are importable from here (`from torale import Torale, ToraleAsync, monitor`);
they load on first use, so the server does not pay for them. Nothing here loads the server:
`pip install torale` (no extras) is the SDK and the client CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from torale.sdk import Torale, ToraleAsync, monitor

__all__ = ["Torale", "ToraleAsync", "__version__", "monitor"]


def __getattr__(name: str) -> Any:
    if name in ("Torale", "ToraleAsync", "monitor"):
        from torale import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'torale' has no attribute {name!r}")
