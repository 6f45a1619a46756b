"""The part of ``Client`` and ``AsyncClient`` that does not send anything: credentials, options, shared state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from callerid_client._api import Api
from callerid_client._core import ClientOptions, Pacer, RetryHook, RetryPolicy, TokenStore, pacer_for

_UNSET: Any = object()


class BaseClient:
    def __init__(
        self,
        base_url: str,
        account_id: str,
        key_id: str,
        api_key: str,
        *,
        options: ClientOptions | None = None,
        timeout: float = _UNSET,
        retry: RetryPolicy = _UNSET,
        token_ttl: float = _UNSET,
        token_refresh_margin: float = _UNSET,
        on_mint_limit: Literal["wait", "raise"] = _UNSET,
        mint_wait_max: float = _UNSET,
        requests_per_second: int | None = _UNSET,
        batches_per_minute: int | None = _UNSET,
        on_retry: RetryHook | None = _UNSET,
        tokens: TokenStore | None = None,
        pacer: Pacer | None = None,
    ):
        """``base_url``: the deployment (e.g. ``https://callerid.example.com``); ``account_id``: the
        ``clientAccountId``; ``key_id``/``api_key``: an API key pair (console, Manage API Keys). The keywords
        override fields of ``options`` (see ``ClientOptions``)."""
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("timeout", timeout),
                ("retry", retry),
                ("token_ttl", token_ttl),
                ("token_refresh_margin", token_refresh_margin),
                ("on_mint_limit", on_mint_limit),
                ("mint_wait_max", mint_wait_max),
                ("requests_per_second", requests_per_second),
                ("batches_per_minute", batches_per_minute),
                ("on_retry", on_retry),
            )
            if value is not _UNSET
        }
        self.options = replace(options or ClientOptions(), **overrides)
        self.base_url = base_url.rstrip("/")
        self.account_id = account_id
        self.key_id = key_id
        self.api_key = api_key
        self.api = Api(account_id, self.options)
        self.tokens = tokens or TokenStore(self.options.token_ttl, self.options.token_refresh_margin)
        self.pacer = pacer or pacer_for(self.options)

    def _same_credentials(self) -> dict[str, Any]:
        """Constructor arguments for another client of the same account sharing tokens and pacing."""
        return {
            "base_url": self.base_url,
            "account_id": self.account_id,
            "key_id": self.key_id,
            "api_key": self.api_key,
            "options": self.options,
            "tokens": self.tokens,
            "pacer": self.pacer,
        }
