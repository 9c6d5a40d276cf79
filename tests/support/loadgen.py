"""The HTTP client that generates load in `make bench` and `make load`.

aiohttp, not httpx: httpx's connection pool spends milliseconds of CPU per request once requests queue (measured:
75% of a core for 74 requests/s), so the load generator became the bottleneck it was meant to measure. The client
answers with a `Reply` read in full, shaped like the few parts of an httpx response load code uses.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

CONNECTIONS = 64


@dataclass(frozen=True)
class Reply:
    """A response read in full."""

    status_code: int
    content: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """The body parsed as JSON."""
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode("utf-8", "replace")


class LoadClient:
    """Keep-alive connections (at most `limit`) for open-loop load; raises aiohttp.ClientError or TimeoutError."""

    def __init__(self, *, limit: int = CONNECTIONS, timeout: float = 60.0) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit), timeout=aiohttp.ClientTimeout(total=timeout),
            json_serialize=lambda v: orjson.dumps(v).decode())

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def request(self, method: str, url: str, **kw: Any) -> Reply:
        """One request (params, json, headers, data as in aiohttp), its response read in full."""
        async with self._session.request(method, url, **kw) as r:
            return Reply(r.status, await r.read(), dict(r.headers))

    async def get(self, url: str, **kw: Any) -> Reply:
        """GET."""
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> Reply:
        """POST."""
        return await self.request("POST", url, **kw)

    async def patch(self, url: str, **kw: Any) -> Reply:
        """PATCH."""
        return await self.request("PATCH", url, **kw)

    async def put(self, url: str, **kw: Any) -> Reply:
        """PUT."""
        return await self.request("PUT", url, **kw)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause this process's garbage collector while it generates load and times answers.

    A full collection in the load generator took 60 ms in `make bench` runs, and every request in flight at that
    moment was charged those milliseconds as if the service had been slow (timeit pauses the collector for the same
    reason). What is allocated meanwhile is collected afterwards."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
