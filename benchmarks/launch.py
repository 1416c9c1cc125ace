"""`python -m benchmarks.launch ARGV...`: run ARGV once and print one JSON object: its wall
time, CPU time, maximum resident set size and exit status.

A process forked from the benchmark itself would count the benchmark's own memory in its
maximum RSS (Linux carries a process's high-water mark across exec), so the measured process
is started from this small one instead, and timed here, where this process's own start-up
is not counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def main(argv: list[str]) -> int:
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:]
    result = {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss * 1024,  # KiB on Linux
        "code": code,
        "error": " ".join(tail) if code else "",
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
