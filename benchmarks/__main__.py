"""`python -m benchmarks [--quick | --smoke] [--out FILE]`: measure sdm_async, the official
SDK and bare grpc.aio against emulators running in their own processes, in interleaved
rounds; print the tables and write the results as JSON."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import cases as C
from benchmarks import startup
from benchmarks.report import case_json, check_json, render

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, 3 rounds: under a minute")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, 1 round: checks it runs")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file ({DEFAULT_OUT.name})")
    p.add_argument(
        "--only",
        metavar="CASE",
        action="append",
        help="measure only this case (by id; repeatable), without memory and conversion",
    )
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the emulators to one CPU and this client to another",
    )
    return p


def pin() -> tuple[set[int], set[int]] | None:
    """Emulators on the first CPU we may use, the client (and its threads, and the memory
    subprocesses) on the second: each side gets one core and neither steals the other's."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    server, client = {cpus[0]}, {cpus[1]}
    os.sched_setaffinity(0, client)
    return server, client


def _git() -> dict[str, Any]:
    """The commit measured, and which files of the SDK differ from it (work in progress)."""
    root = Path(__file__).resolve().parents[1]

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "sdm_async")
    return {"commit": git("rev-parse", "--short", "HEAD"), "changed": changed.splitlines()}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("sdm-async", "strongdm", "grpcio", "protobuf"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    return out


async def run(
    mode: str,
    console: Console,
    pinned: tuple[set[int], set[int]] | None,
    only: list[str] | None = None,
) -> tuple[dict[str, Any], list[C.Case]]:
    sizes = C.SIZES[mode]
    started = time.perf_counter()
    # Cases that need no emulator: with --only naming nothing else, none is started.
    standalone = [startup.case(startup.RUNS[mode])]
    needs_env = not only or bool(set(only) - {c.id for c in standalone})
    env = C.Env(sizes, pinned[0] if pinned else None)
    if needs_env:
        console.log(f"starting {len(env.procs)} emulator processes")
        env.start()
    try:
        conversion: dict[str, Any] | None = None
        memory: dict[str, Any] | None = None
        cases = standalone
        if needs_env:
            await env.load_ids()
            if not only:
                console.log("conversion microbenchmark")
                conversion = await C.conversion(env)
                shown = " and ".join(f"{n:,}" for n in sizes.memory_n)
                console.log(f"memory: listing {shown} accounts")
                memory = C.memory(env)
            env.procs["memory"].stop()
            cases = C.build(env) + standalone
        if only:
            unknown = set(only) - {c.id for c in cases}
            if unknown:
                raise SystemExit(f"--only: no case {', '.join(sorted(unknown))}")
            cases = [c for c in cases if c.id in only]
        for case in cases:
            case.runs = {c.label: [] for c in case.contenders}
        for r in range(sizes.rounds):
            for case in cases:
                if case.rounds is not None and r >= case.rounds:
                    continue
                k = r % len(case.contenders)  # rotate who goes first, round by round
                for contender in case.contenders[k:] + case.contenders[:k]:
                    gc.collect()
                    result = await contender.job(r)
                    case.runs[contender.label].append(result)
                    more = f", {result.errors} errors" if result.errors else ""
                    console.log(
                        f"round {r + 1}/{sizes.rounds} {case.id:12} {contender.label:22} "
                        f"{result.rate:>10,.0f} {case.unit}  {result.cpu_us:7.1f} us CPU{more}"
                    )
    finally:
        env.stop()
    checks = [check_json(k) for c in cases for k in c.checks(c)]
    if memory is not None:
        checks += [check_json(k) for k in C.memory_checks(memory)]
    doc = {
        "meta": {
            "mode": mode,
            "rounds": sizes.rounds,
            "sizes": dataclasses.asdict(sizes),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "seconds": time.perf_counter() - started,
            "cpus": os.cpu_count(),
            "pinned": {"emulators": sorted(pinned[0]), "client": sorted(pinned[1])}
            if pinned
            else None,
            "platform": platform.platform(),
            "versions": _versions(),
            "git": _git(),
            "server_page_size": C.SERVER_PAGE,
            "latency": C.LATENCY,
        },
        "cases": [case_json(c) for c in cases],
        "conversion": conversion,
        "memory": memory,
        "checks": checks,
    }
    return doc, cases


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    console = Console(stderr=True)
    pinned = pin() if args.pin else None
    doc, cases = asyncio.run(run(mode, console, pinned, args.only))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    out = Console()
    render(doc, cases, out if out.is_terminal else Console(width=150))
    misses = sum(1 for c in doc["checks"] if not c["pass"] and not c["target"].startswith("(info)"))
    print(f"{misses} target(s) missed; results in {args.out} ({doc['meta']['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
