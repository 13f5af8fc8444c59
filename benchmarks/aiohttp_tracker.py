"""``oms-shipments`` with the tracker's carrier requests sent by aiohttp instead of ``http11``.

For the client comparison in ``benchmarks/tracker.py`` (``--clients``) only: it swaps the
pool the asyncio carrier client uses for one with the same ``get`` over an
``aiohttp.ClientSession`` (keep-alive, a connection limit as large as the tracker's
concurrency), then runs the ordinary command line. Everything else in the process (the
claims, the pacing, the batched writes) is the tracker's own, so the difference measured
is the client's. Needs ``pip install aiohttp``; the services do not depend on it.

    python -m benchmarks.aiohttp_tracker run tracker
"""

from __future__ import annotations

import asyncio

import aiohttp
import httpx

from services.carriers import async_client


class AiohttpPool:
    def __init__(self, base_url: str, max_idle: int = 256):
        self._base = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the tracker's event loop
            connector = aiohttp.TCPConnector(limit=1024, limit_per_host=1024, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def get(self, path: str, headers: dict[str, str], timeout_s: float) -> tuple[int, dict[str, str], bytes]:
        try:
            async with self._open().get(
                self._base + path, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                body = await response.read()
                return response.status, {k.lower(): v for k, v in response.headers.items()}, body
        except asyncio.TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {timeout_s:.1f}s") from exc
        except aiohttp.ClientError as exc:
            raise httpx.ConnectError(str(exc)) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def main() -> None:
    async_client.Http11Pool = AiohttpPool
    from services.tools.cli import app

    app(prog_name="oms-shipments")


if __name__ == "__main__":
    main()
