"""The hot endpoints as plain ASGI handlers, answered before FastAPI's router (and documented in its OpenAPI).

Why not ordinary FastAPI routes: on a 2-core machine FastAPI's routing over ~60 routes, its dependency
resolution and Starlette's Request/Response objects cost ~150 µs of CPU per request, several times what the
real-time record, the caller-ID lookup or the health probe need for their own work (measured with
``bench/personalisation.py``). Those few endpoints are matched here by path first; a request on any other
path goes on to FastAPI untouched. Handlers keep the layering of the rest of the app: parse, call the
service, render; errors are the same domain errors (and ``ApiError``), answered by the same ``errors.problem_of``.

This is the outermost layer: a fast route's request gets its request id, access line and metrics (labelled by
the route template, which this layer puts in ``scope["route"]``) from ``RequestObservation`` here, exactly as
``ObservabilityMiddleware`` gives them to every other request, without a middleware's send wrapper in between.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from callerid.errors import ApiError, method_not_allowed, problem_of
from callerid.failures import DomainError
from callerid.ops.middleware import INTERNAL_ERROR, INTERNAL_ERROR_START, RequestObservation
from callerid.responses import JsonResponse
from callerid.runtime import Runtime

_JSON_CONTENT_TYPE = (b"content-type", JsonResponse.media_type.encode())


class FastRequest:
    """What a fast handler may read of a request: path parameters, headers, query and body."""

    __slots__ = ("_query", "_receive", "path_params", "runtime", "scope")

    def __init__(self, scope: Scope, receive: Receive, path_params: dict[str, str], runtime: Runtime):
        self.scope = scope
        self._receive = receive
        self.path_params = path_params
        self.runtime = runtime
        self._query: dict[str, str] | None = None

    @property
    def path(self) -> str:
        return str(self.scope["path"])

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower-case bytes), as latin-1 text like Starlette's."""
        for key, value in self.scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def query(self, name: str) -> str | None:
        """The first value of query parameter ``name``, percent-decoded (as ``urllib.parse.parse_qsl`` would)."""
        if self._query is None:
            self._query = {}
            raw = self.scope.get("query_string", b"").decode("latin-1")
            if "%" in raw or "+" in raw:
                pairs = parse_qsl(raw, keep_blank_values=True)
            else:  # the usual case, without parse_qsl's generic (and, per request, costly) work
                pairs = [(part.partition("=")[0], part.partition("=")[2]) for part in raw.split("&") if part]
            for key, value in pairs:
                self._query.setdefault(key, value)
        return self._query.get(name)

    async def body(self) -> bytes:
        chunks = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


@dataclass(frozen=True)
class FastResponse:
    content: Any
    status: int = 200
    headers: dict[str, str] | None = None


Handler = Callable[[FastRequest], Awaitable[FastResponse]]


@dataclass(frozen=True)
class FastRoute:
    """One endpoint: method(s), path template (``{name}`` = one path segment), handler, OpenAPI operation.

    ``access`` is the (feature, level) a business endpoint's token needs, for tests sweeping every guarded
    endpoint; ``operation`` is the OpenAPI operation object (see ``operation()``).
    """

    methods: tuple[str, ...]
    path: str
    handler: Handler
    operation: dict[str, Any]
    access: tuple[str, str] | None = None
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    allowed: tuple[str, ...] = field(init=False, repr=False, compare=False)  # methods incl. HEAD for GET

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))
        head = ("HEAD",) if "GET" in self.methods and "HEAD" not in self.methods else ()
        object.__setattr__(self, "allowed", self.methods + head)


async def send_json(
    send: Send,
    status: int,
    content: Any,
    headers: dict[str, str] | None = None,
    extra_header: tuple[bytes, bytes] | None = None,
    *,
    head: bool = False,
) -> None:
    """A JSON response; ``head``: the same status and headers with no body (RFC 9110 §9.3.2)."""
    body = orjson.dumps(content)
    raw_headers = [_JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode())]
    if headers:
        raw_headers.extend((key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items())
    if extra_header is not None:
        raw_headers.append(extra_header)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


class FastLane:
    """ASGI middleware: requests on a fast route's path are answered here, the rest go on to ``app``."""

    def __init__(self, app: ASGIApp, routes: Sequence[FastRoute]):
        self.app = app
        self.routes = list(routes)
        self._allowed: dict[str, tuple[str, ...]] = {}  # per fast route: its methods and the app's on its path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for route in self.routes:
                match = route.pattern.match(path)
                if match is not None:
                    if scope["method"] not in route.allowed:
                        await self._other_method(route, scope, receive, send)
                        return
                    scope["route"] = route
                    await self._answer(route, match.groupdict(), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, route: FastRoute, path_params: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        observation = RequestObservation(scope)
        status = 500
        try:
            try:
                response = await route.handler(FastRequest(scope, receive, path_params, scope["app"].state.runtime))
            except (DomainError, ApiError) as error:
                problem = problem_of(error)
                status = problem.status_code
                await send_json(send, status, problem.body(), problem.headers, observation.header)
                return
            status = response.status
            await send_json(
                send, status, response.content, response.headers, observation.header, head=scope["method"] == "HEAD"
            )
        except Exception as exc:
            observation.failed(scope, exc)
            status = 500
            start = dict(INTERNAL_ERROR_START)
            start["headers"] = [*start["headers"], observation.header]
            await send(start)
            await send({"type": "http.response.body", "body": INTERNAL_ERROR})
        finally:
            observation.finish(scope, str(status))

    async def _other_method(self, route: FastRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """A method the fast route does not serve. FastAPI may serve it on the same path (S2 shares B2's path):
        then FastAPI answers. Otherwise the answer is 405, whose ``Allow`` lists the methods of both."""
        router = scope["app"].router
        if any(candidate.matches(scope)[0] is Match.FULL for candidate in router.routes):
            await self.app(scope, receive, send)
            return
        allowed = self._allowed.get(route.path)
        if allowed is None:
            # Asked once per route, of the same router matching that answers the requests themselves.
            others = [
                method
                for method in _METHODS
                if method not in route.allowed
                and any(c.matches({**scope, "method": method})[0] is Match.FULL for c in router.routes)
            ]
            allowed = self._allowed[route.path] = (*route.allowed, *others)
        scope["route"] = route
        observation = RequestObservation(scope)
        problem = method_not_allowed(allowed)
        await send_json(send, problem.status_code, problem.body(), problem.headers, observation.header)
        observation.finish(scope, str(problem.status_code))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


# --- OpenAPI -------------------------------------------------------------------------------------------------


def documented(description: str, example: Any = None, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI response object with a JSON body in our response media type."""
    entry: dict[str, Any] = {}
    if schema is not None:
        entry["schema"] = schema
    if example is not None:
        entry["example"] = example
    return {"description": description, "content": {JsonResponse.media_type: entry}}


def operation(
    operation_id: str,
    *,
    summary: str,
    description: str,
    tags: list[str],
    responses: dict[int, dict[str, Any]],
    parameters: Sequence[dict[str, Any]] = (),
    request_body: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    deprecated: bool = False,
) -> dict[str, Any]:
    """An OpenAPI operation object. ``parameters``: parameter objects (``callerid.openapi.query_parameter``, ...);
    path parameters not among them come from the route's template when the document is built. ``request_body``: a
    ``requestBody`` object (``callerid.openapi.json_body``). ``callerid.openapi.finish`` adds what every operation
    of the family shares."""
    op: dict[str, Any] = {
        "tags": tags,
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "parameters": list(parameters),
        "responses": {str(status): response for status, response in responses.items()},
    }
    if request_body is not None:
        op["requestBody"] = request_body
    if security is not None:
        op["security"] = security
    if deprecated:
        op["deprecated"] = True
    return op


def component_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """JSON schemas of pydantic models, named for ``#/components/schemas/<Model>`` references."""
    _, document = models_json_schema(
        [(model, "serialization") for model in models], ref_template="#/components/schemas/{model}"
    )
    return dict(document.get("$defs", {}))


def add_to_openapi(document: dict[str, Any], routes: Sequence[FastRoute], schemas: dict[str, Any]) -> None:
    """Add the fast routes' operations (and the component schemas they refer to) to an OpenAPI document."""
    paths = document.setdefault("paths", {})
    for route in routes:
        declared = {p["name"] for p in route.operation.get("parameters", []) if p.get("in") == "path"}
        path_parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", route.path)
            if name not in declared
        ]
        for method in route.methods:
            op = copy.deepcopy(route.operation)
            op["parameters"] = path_parameters + list(op.get("parameters", []))
            paths.setdefault(route.path, {})[method.lower()] = op
    if schemas:
        document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
