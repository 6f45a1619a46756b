"""A real HTTP server on 127.0.0.1 for webhook tests: answers 200, an error, a redirect, or hangs.

Hand-written on asyncio streams (HTTP/1.1, Content-Length bodies, keep-alive) so that it runs in the
test's own event loop and the test can switch its behaviour between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Receiver:
    status: int = 200
    hang: bool = False
    delay: float = 0.0  # hold each answer this long (real seconds) so that deliveries overlap
    in_flight: int = 0
    peak: int = 0  # most requests being answered at once
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?key=s3cret"

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Received(method, target, headers, body))
                self.arrived.set()
                if self.hang:
                    await self._release.wait()
                    return
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.in_flight -= 1
                reason = {200: "OK", 302: "Found"}.get(self.status, "Error")
                extra = "Location: http://127.0.0.1:1/elsewhere\r\n" if self.status in (301, 302, 307, 308) else ""
                # 204 and 304 answers have no body (RFC 9110): one sent anyway would be read as the next answer.
                body = "" if self.status in (204, 304) else "ok"
                length = f"Content-Length: {len(body)}\r\n"
                head = f"HTTP/1.1 {self.status} {reason}\r\n{length}{extra}Content-Type: text/plain\r\n"
                writer.write(f"{head}\r\n{body}".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
