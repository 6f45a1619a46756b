"""Client accounts, their admins, API keys, access tokens and the per-token rate limits."""
