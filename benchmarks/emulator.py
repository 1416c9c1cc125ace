"""The emulator under test, in its own process (so that its CPU is not the client's)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from types import TracebackType

READY = "sdm-async emulator listening on "


class EmulatorProcess:
    """`python -m sdm_async emulator ...` with the given options, until `stop()`.

    `start()` returns once the emulator says it is listening; `address` is then set.
    """

    def __init__(
        self, access_key: str, secret_key: str, *options: str, cpus: set[int] | None = None
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.options = options
        self.cpus = cpus  # pin the emulator to these CPUs (None: anywhere)
        self.address = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log = tempfile.TemporaryFile("w+")  # stderr: a pipe nobody reads could fill up

    def __repr__(self) -> str:
        return f"<EmulatorProcess {self.address or 'not started'} {' '.join(self.options)}>"

    def start(self) -> EmulatorProcess:
        argv = [sys.executable, "-m", "sdm_async", "emulator", "--port", "0"]
        argv += ["--access-key", self.access_key, "--secret-key", self.secret_key]
        self._proc = subprocess.Popen(
            [*argv, *self.options],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if self.cpus:
            # Before the emulator starts any thread (its threads inherit the mask).
            os.sched_setaffinity(self._proc.pid, self.cpus)
        return self

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Block until the emulator listens; its address (`127.0.0.1:PORT`)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None, "start() first"
        if self.address:
            return self.address
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise RuntimeError(f"the emulator did not start within {timeout:g} s")
                line = proc.stdout.readline()
                if not line:  # exited
                    raise RuntimeError(f"the emulator exited ({proc.wait()}): {self.log()}")
                if line.startswith(READY):
                    self.address = line[len(READY) :].strip()
                    return self.address

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def log(self) -> str:
        """What the emulator wrote on stderr so far (its last 2000 characters)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-2000:].strip()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
