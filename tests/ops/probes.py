"""Throwaway routes added to a test app instance: an authenticated endpoint, a crash, framework validation."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from callerid.accounts.dependencies import require_access
from callerid.accounts.service import TokenPrincipal

SECURE_PATH = "/clients/{clientAccountId}/probe/secure"
CRASH_PATH = "/probe/crash"


class ProbeBody(BaseModel):
    name: str
    count: int


def add_probe_routes(app: FastAPI, *, crash_message: str = "probe crashed") -> None:
    """Routes that exist only in tests. Added after startup: FastAPI looks routes up per request."""

    @app.get(SECURE_PATH)
    async def secure(principal: TokenPrincipal = Depends(require_access("call_personalisation", "read"))) -> Any:
        return {"account": str(principal.account_id)}

    @app.get(CRASH_PATH)
    async def crash() -> Any:
        raise RuntimeError(crash_message)

    @app.get("/probe/query")
    async def query(count: int, label: str = "x") -> Any:
        return {"count": count, "label": label}

    @app.post("/probe/body")
    async def body(payload: ProbeBody) -> Any:
        return payload.model_dump()

    @app.get("/probe/http/{status}")
    async def http_status(status: int) -> Any:
        raise HTTPException(status_code=status, detail="framework detail")
