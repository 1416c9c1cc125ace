"""`sdm-async emulator`: serve the emulator until SIGINT or SIGTERM.

Whatever stops it from starting (a bad argument, a port in use, a db it cannot use) is one
line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import NoReturn

PROG = "sdm-async emulator"
log = logging.getLogger("sdm_async.emulator")


def _seconds(text: str) -> float:
    """`0.005`, `5ms` or `2s`."""
    value = text.strip().lower()
    try:
        if value.endswith("ms"):
            return float(value[:-2]) / 1000
        return float(value.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (e.g. 0.005, 5ms, 2s)"
        ) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other start-up error, rather than the whole usage first.
        self.exit(2, f"{PROG}: {message} (see {PROG} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Serve a local emulator of the StrongDM API (gRPC, plain text or TLS) until "
        "interrupted.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8890, help="0 picks a free port (default 8890)")
    p.add_argument("--access-key", help="admin API key to accept (or $SDM_API_ACCESS_KEY)")
    p.add_argument("--secret-key", help="its base64 secret (or $SDM_API_SECRET_KEY)")
    p.add_argument("--rate-limit", type=int, default=0, help="calls per window per key (0: off)")
    p.add_argument("--rate-limit-window", type=_seconds, default=60.0, metavar="SECONDS")
    p.add_argument("--latency", type=_seconds, default=0.0, help="added to every call")
    p.add_argument("--latency-jitter", type=_seconds, default=0.0, help="plus up to this much")
    p.add_argument("--fault-rate", type=float, default=0.0, help="fraction of calls that fail")
    p.add_argument("--fault-code", choices=["UNAVAILABLE", "INTERNAL"], default="UNAVAILABLE")
    p.add_argument(
        "--fault-when",
        choices=["before", "after"],
        default="before",
        help="fail before the change is applied, or after it (the reply is lost)",
    )
    p.add_argument("--db", help="SQLite file that keeps the state across restarts")
    p.add_argument("--page-size", type=int, default=50, help="list page size by default")
    p.add_argument("--max-page-size", type=int, default=1000)
    p.add_argument("--seed", type=int, help="seed for latency and fault randomness")
    p.add_argument(
        "--max-concurrent-streams",
        type=int,
        metavar="N",
        help="HTTP/2 streams per connection (real servers often allow 100)",
    )
    p.add_argument(
        "--seed-users",
        type=_count,
        default=0,
        metavar="N",
        help="start with N users (only a fresh organisation: not again on a --db kept before)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve TLS with this PEM certificate")
    p.add_argument("--tls-key", metavar="FILE", help="...and this PEM private key")
    p.add_argument("-v", "--verbose", action="store_true", help="log every call (debug level)")
    p.add_argument(
        "--list-methods", action="store_true", help="print which API methods are emulated, exit"
    )
    return p


def _read_tls(cert: str | None, key: str | None) -> dict[str, bytes]:
    """The Emulator's `tls_cert`/`tls_key` arguments from the files named."""
    if (cert is None) != (key is None):
        raise ValueError("give both --tls-cert and --tls-key, or neither")
    out: dict[str, bytes] = {}
    for option, path in (("tls_cert", cert), ("tls_key", key)):
        if path is not None:
            try:
                with open(path, "rb") as f:
                    out[option] = f.read()
            except OSError as e:
                raise ValueError(f"--{option.replace('_', '-')} {path}: {e.strerror}") from None
    return out


def not_emulated() -> list[str]:
    """The API methods the emulator answers with UNIMPLEMENTED."""
    from sdm_async.testing import schema
    from sdm_async.testing.auth import Keys
    from sdm_async.testing.backend import Backend

    backend = Backend(Keys())
    return [m.full_name for m in schema.methods().values() if not backend.implemented(m)]


async def serve(args: argparse.Namespace) -> int:
    import asyncio

    # Imported once the arguments are parsed: `--help` and a usage error need no server.
    from sdm_async.testing.emulator import Emulator
    from sdm_async.testing.status import StartError

    access_key = args.access_key or os.environ.get("SDM_API_ACCESS_KEY") or None
    secret_key = args.secret_key or os.environ.get("SDM_API_SECRET_KEY") or None
    if (access_key is None) != (secret_key is None):
        print(f"{PROG}: give both the access key and the secret key", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        emu = Emulator(
            host=args.host,
            port=args.port,
            access_key=access_key,
            secret_key=secret_key,
            rate_limit=args.rate_limit,
            rate_limit_window=args.rate_limit_window,
            latency=args.latency,
            latency_jitter=args.latency_jitter,
            fault_rate=args.fault_rate,
            fault_code=args.fault_code,
            fault_when=args.fault_when,
            db=args.db,
            page_size=args.page_size,
            max_page_size=args.max_page_size,
            seed=args.seed,
            max_concurrent_streams=args.max_concurrent_streams,
            **args.tls,
        )
        await emu.start()
    except (ValueError, StartError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    try:
        # Seeded once listening (a port in use must not have seeded the db first), and
        # before the address is printed: no call is served before the users are there.
        if args.seed_users and not emu.seed_users(args.seed_users):
            log.info("--seed-users ignored: db %s already holds an organisation", args.db)
        if emu.root_certificates:
            log.info("serving TLS with the certificate of %s", args.tls_cert)
        print(f"{PROG} listening on {emu.address}", flush=True)
        if access_key is None:
            # Made up here (or kept in --db): the caller cannot know it otherwise.
            print(f"SDM_API_ACCESS_KEY={emu.access_key}", flush=True)
            print(f"SDM_API_SECRET_KEY={emu.secret_key}", flush=True)
        await stop.wait()
    finally:
        await emu.stop(grace=1.0)
    print(f"{PROG} stopped", flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.list_methods:
        from sdm_async.testing import schema

        missing = set(not_emulated())
        for m in schema.methods().values():
            print(f"{'no ' if m.full_name in missing else 'yes'} {m.full_name}")
        return 0
    try:
        args.tls = _read_tls(args.tls_cert, args.tls_key)
    except ValueError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
    )
    import asyncio

    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:  # before the signal handlers are in place
        return 130
