"""API keys: `sk_` + 43 URL-safe characters (256 random bits), kept only as an HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "sk_"
DISPLAY_PREFIX_LENGTH = 12


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str, hashing_key: bytes) -> str:
    # A fast keyed hash is right for high-entropy keys: lookups stay O(1) by an indexed
    # equality on the digest, and a leaked table is useless without the hashing key.
    return hmac.new(hashing_key, key.encode(), hashlib.sha256).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and 35 <= len(token) <= 128
