"""The start-up case: how long a fresh process takes to import the SDK or to print a command's
help, and its peak memory, next to `import strongdm` and bare `import grpc, google.protobuf`.

Every launch is its own process, started by `benchmarks.launch` and waited for with
`os.wait4`, which gives that child's wall time, CPU time and maximum resident set size. A job
is `runs` launches of one command; its time is their median. Processes run as installed
packages do, with bytecode caches: PYTHONDONTWRITEBYTECODE is dropped for them, and each
command is launched once, unmeasured, before the first round.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.cases import Case, Check, Contender, median
from benchmarks.contenders import BARE, OFFICIAL, Run

ROOT = Path(__file__).resolve().parents[1]
SDM_IMPORT = "import sdm_async"
OFFICIAL_IMPORT = "import strongdm"
BARE_IMPORT = "import grpc, protobuf"
HELP = (
    ("sdm-async --help", ("--help",)),
    ("sdm-async accounts list --help", ("accounts", "list", "--help")),
    ("sdm-async provision --help", ("provision", "--help")),
)
MOST_TIME = 0.5  # of `import strongdm`'s
RUNS = {"full": 5, "quick": 3, "smoke": 1}  # launches of each command per round, by mode


def _sdm_async_command() -> list[str]:
    """The console script next to this interpreter (as users run it), else `-m sdm_async`."""
    script = Path(sys.executable).with_name("sdm-async")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sdm_async"]


def commands() -> dict[str, list[str]]:
    py = [sys.executable, "-c"]
    out = {
        SDM_IMPORT: [*py, "import sdm_async; sdm_async.Client"],
        OFFICIAL_IMPORT: [*py, "import strongdm"],
        BARE_IMPORT: [*py, "import grpc, google.protobuf"],
    }
    for label, argv in HELP:
        out[label] = [*_sdm_async_command(), *argv]
    return out


def _environ() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def launch(argv: list[str]) -> tuple[float, float, int, str]:
    """One process, started and measured by `benchmarks.launch`: (wall seconds, CPU
    seconds, max RSS bytes, error text or "")."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.launch", *argv],
        cwd=ROOT,
        env=_environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode:
        return 0.0, 0.0, 0, f"benchmarks.launch failed: {done.stderr.strip()[-300:]}"
    r = json.loads(done.stdout)
    error = f"exit {r['code']}: {r['error']}" if r["code"] else ""
    return float(r["wall"]), float(r["cpu"]), int(r["rss"]), error


def _job(argv: list[str], runs: int) -> Run:
    walls, cpus, rss, errors, first = [], [], [], 0, ""
    for _ in range(runs):
        wall, cpu, peak, error = launch(argv)
        walls.append(wall)
        cpus.append(cpu)
        rss.append(peak)
        if error:
            errors += 1
            first = first or error
    # `runs` starts at the median's pace: the rate is starts per second.
    w, c = statistics.median(walls), statistics.median(cpus)
    peak = int(statistics.median(rss))
    return Run(runs, w * runs, c * runs, errors, first_error=first, rss=peak)


def case(runs: int) -> Case:
    argvs = commands()
    warmed: set[str] = set()

    def job(label: str) -> Contender:
        async def measure(r: int) -> Run:
            if label not in warmed:  # bytecode written, files in the page cache
                await asyncio.to_thread(launch, argvs[label])
                warmed.add(label)
            return await asyncio.to_thread(_job, argvs[label], runs)

        return Contender(label, measure)

    return Case(
        "startup",
        f"start-up of a fresh process (median of {runs} launches per round)",
        "starts/s",
        [job(label) for label in argvs],
        checks=_checks,
        baselines={OFFICIAL: OFFICIAL_IMPORT, BARE: BARE_IMPORT},
        notes=[
            "`import sdm_async` also touches `sdm_async.Client`; with bytecode caches, as "
            "installed packages run",
        ],
    )


def _walls(c: Case, label: str) -> list[float]:
    return [r.wall / r.done for r in c.runs.get(label, []) if r.done]


def _time_ratio(c: Case, label: str) -> float:
    """`label`'s time over `import strongdm`'s, round by round; the median."""
    pairs = zip(_walls(c, label), _walls(c, OFFICIAL_IMPORT), strict=False)
    return median([a / b for a, b in pairs if b > 0])


def _checks(c: Case) -> list[Check]:
    out = []
    for label in (SDM_IMPORT, *(h for h, _ in HELP)):
        ratio = _time_ratio(c, label)
        errors = c.errors(label)
        ms = median(_walls(c, label)) * 1000
        shown = f"{ratio:.2f}x ({ms:.0f} ms)" + (f", {errors} errors" if errors else "")
        out.append(
            Check(
                f"{label}: <= {MOST_TIME}x the time of `{OFFICIAL_IMPORT}`",
                shown,
                ratio <= MOST_TIME and not errors,
                ratio,
            )
        )
    ours = median([float(r.rss) for r in c.runs.get(SDM_IMPORT, [])])
    theirs = median([float(r.rss) for r in c.runs.get(OFFICIAL_IMPORT, [])])
    out.append(
        Check(
            f"{SDM_IMPORT}: max RSS <= `{OFFICIAL_IMPORT}`'s",
            f"{ours / 1e6:.1f} MB vs {theirs / 1e6:.1f} MB",
            ours <= theirs,
            ours / theirs if theirs else float("nan"),
        )
    )
    bare = _time_ratio(c, BARE_IMPORT)
    out.append(
        Check(
            f"(info) {BARE_IMPORT}: x the time of `{OFFICIAL_IMPORT}`", f"{bare:.2f}x", True, bare
        )
    )
    return out
