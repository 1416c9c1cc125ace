"""One of several processes sharing one API key, for the shared-key case:

    python -m benchmarks.shared

reads one JSON line on stdin once it has started (it prints `ready` first, so that imports
do not count): {"address", "access_key", "secret_key", "client": "sdm_async" | "official",
"tag", "n", "concurrency", "start"}; sleeps until `start` (wall clock, a window's start chosen
by the parent for every process alike), creates `n` users as its contender does, and prints
one JSON object: the `Run` and the wall-clock time at which it ended. The secret travels on
stdin, never on a command line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from benchmarks.contenders import SDM, Official, SdmAsync, Target, new_users


async def job(spec: dict[str, Any]) -> dict[str, Any]:
    target = Target(spec["address"], spec["access_key"], spec["secret_key"])
    users = new_users(spec["tag"], spec["n"])
    await asyncio.sleep(max(0.0, spec["start"] - time.time()))
    if spec["client"] == SDM:
        run = await SdmAsync(target).bulk_create(users, spec["concurrency"], warm=False, count=True)
    else:
        run = await Official(target).threaded(users, spec["concurrency"], warm=False)
    return {**run.as_dict(), "ended": time.time()}


def main() -> int:
    print("ready", flush=True)
    spec = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(job(spec))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
