"""`sdm-async emulator` in a process of its own, for the tests that need a real process
(signals, kill -9, a port or db held by another process)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

PROG = [sys.executable, "-m", "sdm_async", "emulator"]


@contextmanager
def emulator_process(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`sdm-async emulator ARGS`, once it listens: (process, address). Killed at the end if
    still running."""
    proc = subprocess.Popen(
        [*PROG, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith("sdm-async emulator listening on "), line + proc.stderr.read()
        yield proc, line.rsplit(" ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
