"""Authentication: API keys, OIDC JWTs, users, and the dependencies routes use."""
