"""Peak memory of one listing, measured in a fresh process (so that nothing earlier in the
benchmark run has raised the process's peak):

    python -m benchmarks.memory ADDRESS ACCESS_KEY SECRET_KEY N {tracemalloc,rss}

lists N accounts with `sdm_async` (1000 per page; the consumer keeps nothing) and prints one
JSON object: the peak above the level before the listing, in bytes, and the size of one page
(its 1000 models as Python objects plus its bytes on the wire), the unit of "a page's worth".

- `tracemalloc`: Python allocations only (protobuf's upb arenas are not traced).
- `rss`: resident memory, everything included: the peak (VmHWM, reset just before the
  listing) minus the resident size before it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import sdm_async
from sdm_async._generated.models.accounts import to_pb_Account
from sdm_async._generated.v1 import accounts_pb2

PAGE = 1000


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


async def measure(address: str, key: str, secret: str, n: int, mode: str) -> dict[str, Any]:
    async with sdm_async.Client(key, secret, address, True, page_limit=PAGE) as client:
        # Warm up: a first page, so that channels, buffers and caches exist before the base.
        page = await _first_page(client)
        wire = sum(len(_wire(m)) for m in page)
        del page
        gc.collect()

        if mode == "tracemalloc":
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        else:
            reset = _reset_peak_rss()
            before = _status_kb("VmRSS") * 1024

        count = 0
        pager = client.accounts.list("")
        async for account in pager:
            account.id  # noqa: B018 - read, not kept
            count += 1
            if count == n:
                break
        await pager.aclose()

        if mode == "tracemalloc":
            peak = tracemalloc.get_traced_memory()[1] - before
            # One page's models, held, measured the same way.
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
            page = await _first_page(client)
            held = tracemalloc.get_traced_memory()[0] - base
            del page
            tracemalloc.stop()
            result = {"peak": peak, "page_models": held}
        else:
            peak = _status_kb("VmHWM") * 1024 - before
            result = {"peak": peak, "peak_reset": reset}
    return {"n": count, "mode": mode, "page_wire": wire, **result}


async def _first_page(client: sdm_async.Client) -> list[Any]:
    pager = client.accounts.list("")
    pages = pager.pages()
    page: list[Any] = await pages.__anext__()
    await pager.aclose()  # cancels the prefetch of the second page
    return page


def _wire(model: Any) -> bytes:
    m = accounts_pb2.Account()
    to_pb_Account(model, m)
    return m.SerializeToString()


def main(argv: list[str]) -> int:
    address, key, secret, n, mode = argv
    if mode not in ("tracemalloc", "rss"):
        raise SystemExit("mode: tracemalloc or rss")
    print(json.dumps(asyncio.run(measure(address, key, secret, int(n), mode))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
