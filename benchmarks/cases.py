"""The cases: what each measures, against which emulator, at which size, and its targets.

Sizes come in three modes: `full` (the numbers the README quotes), `quick` (under a minute)
and `smoke` (a few seconds, for the test suite: it checks that everything runs, not speed).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import sdm_async
from benchmarks import convert
from benchmarks.contenders import (
    BARE,
    OFFICIAL,
    SDM,
    BareAio,
    NewUser,
    Official,
    Run,
    SdmAsync,
    Target,
    new_users,
)
from benchmarks.emulator import EmulatorProcess
from sdm_async.testing.auth import new_key_pair

ROOT = Path(__file__).resolve().parents[1]
LATENCY = "5ms"  # server latency of the concurrent create cases
SERVER_PAGE = 50  # the emulator's default page size, standing in for the API's
BIG_PAGE = 1000  # the most the API hands out per page
CONCURRENCY = 64
HIGH_CONCURRENCY = 256
RATE_JOB = 5  # the rate-limit job is this many windows' budget
MEMORY_PAGES = 3  # "within a few pages' worth"
CPU_PER_CALL = 1.15  # client CPU per call at most this many times bare grpc.aio's
OWN_KEY_PERMISSIONS = ["user:list", "user:create"]  # what the timed cases' contenders call


@dataclass(frozen=True)
class Sizes:
    rounds: int  # interleaved rounds of every timed case
    list_n: int  # accounts listed
    calls: int  # calls of the one-at-a-time cases
    bulk_n: int  # creates of the concurrent cases
    official_seq_n: int  # creates of the official SDK one at a time at 5 ms (it is slow)
    memory_n: tuple[int, int]  # the two listing lengths compared for memory
    rate_limit: int  # calls per window in the rate-limited emulator
    rate_window: float  # seconds
    rate_rounds: int  # rounds of the rate-limit case (each takes RATE_JOB windows or more)
    shared_limit: int  # calls per window of the key that several processes share
    shared_window: float  # seconds
    shared_jobs: tuple[tuple[int, int], ...]  # (processes, creates in all) of the shared case
    shared_rounds: int
    shared_official: bool  # the official SDK's baseline too (processes of 64 threads each)


SHARED_FULL = ((1, 1_200), (4, 1_200), (8, 1_600))
SHARED_QUICK = ((1, 400), (4, 400), (8, 800))
SIZES = {
    "full": Sizes(
        5, 20_000, 2_000, 5_000, 300, (10_000, 100_000), 400, 2.0, 3, 100, 1.0, SHARED_FULL, 2, True
    ),
    "quick": Sizes(
        3, 20_000, 400, 1_500, 100, (10_000, 100_000), 100, 1.0, 1, 100, 1.0, SHARED_QUICK, 1, True
    ),
    # The shared case's smoke run: two short runs (process start-up is most of them).
    "smoke": Sizes(
        1, 1_000, 20, 100, 10, (1_000, 3_000), 20, 0.5, 1, 20, 0.5, ((1, 20), (2, 20)), 1, False
    ),
}


@dataclass
class Check:
    """One target: what it says, what was measured, and whether that meets it."""

    target: str
    measured: str
    passed: bool
    value: float | None = None


Job = Callable[[int], Awaitable[Run]]  # round number -> one measured run


@dataclass
class Contender:
    label: str
    job: Job


@dataclass
class Case:
    id: str
    title: str
    unit: str  # "items/s" or "calls/s"
    contenders: list[Contender]
    checks: Callable[[Case], list[Check]] = field(repr=False)
    rounds: int | None = None  # None: every round
    # The labels the ratio columns compare with, by kind ("official", "grpc.aio").
    baselines: dict[str, str] = field(default_factory=lambda: {OFFICIAL: OFFICIAL, BARE: BARE})
    notes: list[str] = field(default_factory=list)
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def ratios(self, num: str, den: str) -> list[float]:
        """num's rate over den's, round by round."""
        pairs = zip(self.runs.get(num, []), self.runs.get(den, []), strict=False)
        return [a.rate / b.rate for a, b in pairs if b.rate > 0]

    def errors(self, label: str) -> int:
        return sum(r.errors for r in self.runs.get(label, []))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_check(
    case: Case, num: str, den: str, threshold: float, target: str, ratios: list[float] | None = None
) -> Check:
    values = case.ratios(num, den) if ratios is None else ratios
    m = median(values)
    errors = case.errors(num)
    shown = f"{m:.3g}x"
    if errors:
        shown += f", {errors} errors"
    return Check(target, shown, m >= threshold and not errors, m)


def cpu_check(case: Case, num: str, den: str, most: float) -> Check:
    """num's client CPU per call over den's, round by round (lower is better)."""
    pairs = zip(case.runs.get(num, []), case.runs.get(den, []), strict=False)
    m = median([a.cpu_us / b.cpu_us for a, b in pairs if b.cpu_us > 0])
    target = f"<= {most}x bare grpc.aio client CPU per call"
    return Check(target, f"{m:.3g}x", m <= most, m)


# -- the environment: one emulator process per kind of state ---------------------------------


class Env:
    """The emulators (each its own process), started together, and what the cases share."""

    def __init__(self, sizes: Sizes, server_cpus: set[int] | None = None) -> None:
        self.sizes = sizes
        self.key, self.secret = new_key_pair()
        window = f"{sizes.rate_window:g}"
        options = {
            # Seeded, the API's default page size: lists and gets.
            "list": ("--seed-users", str(sizes.list_n), "--page-size", str(SERVER_PAGE)),
            "create": (),  # fresh: creates one at a time
            "latency": ("--latency", LATENCY),  # fresh: concurrent creates
            "memory": ("--seed-users", str(max(sizes.memory_n))),
            "rate": ("--rate-limit", str(sizes.rate_limit), "--rate-limit-window", window),
            "shared": (
                "--rate-limit",
                str(sizes.shared_limit),
                "--rate-limit-window",
                f"{sizes.shared_window:g}",
            ),
        }
        self.procs = {
            name: EmulatorProcess(self.key, self.secret, *opts, cpus=server_cpus)
            for name, opts in options.items()
        }
        self.ids: list[str] = []
        self.made_keys = 0

    async def new_key(self, name: str) -> Target:
        """A new API key on emulator `name`, for one run of one contender.

        The answers' rate-limit budget is per key, and the emulators of the timed cases
        count every call against a nominal one: on a key that other contenders (or its own
        earlier rounds, from another client) had used in the same window, `sdm_async` would
        see calls not its own and pace as a client sharing its key (what the shared-key case
        measures), not as the only client of its key, as a program using it alone is."""
        async with SdmAsync(self.target(name)).client() as c:
            self.made_keys += 1  # token names are unique
            token = sdm_async.Token(
                name=f"bench-key-{self.made_keys}", permissions=OWN_KEY_PERMISSIONS
            )
            made = await c.accounts.create(token)
        return Target(self.procs[name].wait_ready(), made.access_key, made.secret_key)

    def start(self) -> None:
        for p in self.procs.values():
            p.start()
        for p in self.procs.values():
            p.wait_ready()

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()

    def target(self, name: str) -> Target:
        return Target(self.procs[name].wait_ready(), self.key, self.secret)

    async def load_ids(self) -> None:
        async with SdmAsync(self.target("list")).client(page_limit=BIG_PAGE) as c:
            pager = c.accounts.list("")
            async for a in pager:
                self.ids.append(a.id)
                if len(self.ids) == self.sizes.calls:
                    break
            await pager.aclose()


def _tag(case: str, label: str, round: int) -> str:
    return f"{case}-{label.replace(' ', '').replace('.', '')}-r{round}"


# -- the timed cases -------------------------------------------------------------------------


class Client(Protocol):
    """What every contender can do one call at a time."""

    name: str

    async def list_all(self, page_limit: int, warm_id: str) -> Run: ...
    async def get_each(self, ids: Sequence[str]) -> Run: ...
    async def create_each(self, users: Sequence[NewUser]) -> Run: ...
    def use(self, target: Target) -> None: ...


def build(env: Env) -> list[Case]:
    z = env.sizes
    rate = env.target("rate")

    def users(case: str, label: str, round: int, n: int) -> list[NewUser]:
        return new_users(_tag(case, label, round), n)

    def trio(name: str) -> list[Client]:
        target = env.target(name)
        return [SdmAsync(target), Official(target), BareAio(target)]

    def own_key(name: str, c: Client, job: Job) -> Job:
        """`job`, run by `c` with a new API key of its own (made before the clock starts)."""

        async def run(r: int) -> Run:
            c.use(await env.new_key(name))
            return await job(r)

        return run

    def lister(c: Client, page: int) -> Job:
        return own_key("list", c, lambda r: c.list_all(page, env.ids[0]))

    def getter(c: Client) -> Job:
        return own_key("list", c, lambda r: c.get_each(env.ids))

    def creator(c: Client) -> Job:
        return own_key("create", c, lambda r: c.create_each(users("c1", c.name, r, z.calls + 1)))

    cases: list[Case] = []

    # 1. A long listing, one page after another.
    for case_id, page, title, least in (
        ("list-1000", BIG_PAGE, f"list {z.list_n:,} accounts, {BIG_PAGE} per page", 2.0),
        ("list-default", 0, f"list {z.list_n:,} accounts, {SERVER_PAGE} per page (default)", 1.5),
    ):
        cases.append(
            Case(
                case_id,
                title,
                "items/s",
                [Contender(c.name, lister(c, page)) for c in trio("list")],
                checks=partial(_vs_official, least=least),
            )
        )

    # 2. One call at a time: the SDK's own overhead per call.
    cases.append(
        Case(
            "get",
            f"get, one at a time ({z.calls:,} calls)",
            "calls/s",
            [Contender(c.name, getter(c)) for c in trio("list")],
            checks=_vs_bare,
        )
    )
    cases.append(
        Case(
            "create",
            f"create, one at a time ({z.calls:,} calls)",
            "calls/s",
            [Contender(c.name, creator(c)) for c in trio("create")],
            checks=_vs_bare,
        )
    )

    # 3. Many creates at once against a server that takes 5 ms per call.
    lat = env.target("latency")
    sdm, official, bare = SdmAsync(lat), Official(lat), BareAio(lat)

    def on_lat(c: Client, job: Job) -> Job:
        return own_key("latency", c, job)

    c64, c256 = f"{SDM} c{CONCURRENCY}", f"{SDM} c{HIGH_CONCURRENCY}"
    bare64, bare256 = f"{BARE} c{CONCURRENCY}", f"{BARE} c{HIGH_CONCURRENCY}"
    threads = f"{OFFICIAL} {CONCURRENCY} threads"
    n = z.bulk_n + 1  # the first one warms up

    def bulk_checks(c: Case) -> list[Check]:
        return [
            ratio_check(c, c64, bare64, 0.95, f">= 0.95x bare grpc.aio at {CONCURRENCY} in flight"),
            cpu_check(c, c64, bare64, CPU_PER_CALL),
            ratio_check(c, c64, OFFICIAL, 0.0, "(info) x official, one at a time"),
            ratio_check(c, c64, threads, 0.0, f"(info) x official, {CONCURRENCY} threads"),
        ]

    bulk = Case(
        "bulk-64",
        f"create, {LATENCY} latency, concurrency {CONCURRENCY} ({z.bulk_n:,} calls; "
        f"official one at a time: {z.official_seq_n})",
        "calls/s",
        [
            Contender(
                c64, on_lat(sdm, lambda r: sdm.bulk_create(users("b", c64, r, n), CONCURRENCY))
            ),
            Contender(
                bare64,
                on_lat(bare, lambda r: bare.concurrent(users("b", bare64, r, n), CONCURRENCY)),
            ),
            Contender(
                OFFICIAL,
                on_lat(
                    official,
                    lambda r: official.create_each(users("b", OFFICIAL, r, z.official_seq_n + 1)),
                ),
            ),
            Contender(
                threads,
                on_lat(
                    official,
                    lambda r: official.threaded(users("b", threads, r, n), CONCURRENCY),
                ),
            ),
        ],
        checks=bulk_checks,
        baselines={OFFICIAL: OFFICIAL, BARE: bare64},
    )
    cases.append(bulk)

    def high_checks(c: Case) -> list[Check]:
        errors = c.errors(c256)
        first = next((r.first_error for r in c.runs.get(c256, []) if r.first_error), "")
        shown = f"{errors} errors" + (f" ({first})" if first else "")
        pairs = zip(c.runs.get(c256, []), bulk.runs.get(c64, []), strict=False)
        ratios = [a.rate / b.rate for a, b in pairs if b.rate > 0]
        return [
            Check("no error", shown, errors == 0, float(errors)),
            ratio_check(c, c256, c64, 1.0, f">= the concurrency-{CONCURRENCY} rate", ratios),
            cpu_check(c, c256, bare256, CPU_PER_CALL),
        ]

    cases.append(
        Case(
            "bulk-256",
            f"create, {LATENCY} latency, concurrency {HIGH_CONCURRENCY} ({z.bulk_n:,} calls)",
            "calls/s",
            [
                Contender(
                    c256,
                    on_lat(
                        sdm, lambda r: sdm.bulk_create(users("h", c256, r, n), HIGH_CONCURRENCY)
                    ),
                ),
                Contender(
                    bare256,
                    on_lat(
                        bare,
                        lambda r: bare.concurrent(users("h", bare256, r, n), HIGH_CONCURRENCY),
                    ),
                ),
            ],
            checks=high_checks,
            baselines={BARE: bare256},
        )
    )

    # 4. A job of RATE_JOB windows' budget against the emulator's rate limit.
    allowed = z.rate_limit / z.rate_window
    job = RATE_JOB * z.rate_limit
    sdm_rl, official_rl = SdmAsync(rate), Official(rate)

    async def paced(r: int) -> Run:
        await next_window(z.rate_window)
        return await sdm_rl.bulk_create(
            users("rl", SDM, r, job), CONCURRENCY, warm=False, count=True
        )

    async def blind(r: int) -> Run:
        await next_window(z.rate_window)
        return await official_rl.threaded(users("rl", threads, r, job), CONCURRENCY, warm=False)

    cases.append(
        Case(
            "rate-limit",
            f"bulk create of {RATE_JOB}x the budget ({job:,} calls), limit "
            f"{z.rate_limit} per {z.rate_window:g} s, concurrency {CONCURRENCY}",
            "calls/s",
            [Contender(SDM, paced), Contender(threads, blind)],
            checks=partial(_rate_checks, allowed=allowed, labels=(SDM,), others=(threads,)),
            rounds=z.rate_rounds,
            baselines={OFFICIAL: threads},
            notes=["each run starts as a rate-limit window starts"],
        )
    )

    # 5. Several processes, each its own client, sharing one key (and so one budget).
    cases.append(shared_case(env))
    return cases


def shared_case(env: Env) -> Case:
    z = env.sizes
    target = env.target("shared")
    allowed = z.shared_limit / z.shared_window
    contenders = []
    for procs, n in z.shared_jobs:
        label = f"{SDM} x{procs}"
        contenders.append(Contender(label, partial(_shared_run, env, target, SDM, procs, n, label)))
    others = []
    if z.shared_official:
        # The official SDK's blind backoff as a baseline, at the middle size only (slow).
        procs, n = z.shared_jobs[len(z.shared_jobs) // 2]
        label = f"{OFFICIAL} {CONCURRENCY} threads x{procs}"
        others.append(
            Contender(label, partial(_shared_run, env, target, OFFICIAL, procs, n, label))
        )
    sizes = ", ".join(f"{p} x {n // p:,}" for p, n in z.shared_jobs)
    return Case(
        "shared-key",
        f"bulk create from several processes sharing one key (processes x creates: {sizes}), "
        f"limit {z.shared_limit} per {z.shared_window:g} s, concurrency {CONCURRENCY} each",
        "calls/s",
        contenders + others,
        checks=partial(
            _rate_checks,
            allowed=allowed,
            labels=[c.label for c in contenders],
            others=[c.label for c in others],
        ),
        rounds=z.shared_rounds,
        baselines={},
        notes=[
            "each process is its own client; all start as a window starts; the rate is every "
            "process's creates over the time from that start to the last one's end",
        ],
    )


async def _shared_run(
    env: Env, target: Target, client: str, procs: int, n: int, label: str, round: int
) -> Run:
    return await asyncio.to_thread(_shared_procs, env, target, client, procs, n, label, round)


def _shared_procs(
    env: Env, target: Target, client: str, procs: int, n: int, label: str, round: int
) -> Run:
    """`procs` processes of `benchmarks.shared`, each creating its share of `n` users, all
    from the start of one window; their runs summed."""
    argv = [sys.executable, "-m", "benchmarks.shared"]
    children = [
        subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(procs)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"benchmarks.shared exited ({child.wait()})")
        window = env.sizes.shared_window
        now = time.time()
        start = (now // window + 1) * window + 0.01
        for i, child in enumerate(children):
            spec = {
                "address": target.address,
                "access_key": target.access_key,
                "secret_key": target.secret_key,
                "client": client,
                "tag": _tag("sk", label, round) + f"p{i}",
                "n": n // procs,
                "concurrency": CONCURRENCY,
                "start": start,
            }
            assert child.stdin is not None
            child.stdin.write(json.dumps(spec) + "\n")
            child.stdin.close()  # every process has its spec before any may end
        runs = []
        for child in children:
            assert child.stdout is not None
            out = child.stdout.read()
            if child.wait(600):
                raise RuntimeError(f"benchmarks.shared failed ({child.returncode})")
            runs.append(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    ended = max(r["ended"] for r in runs)
    return Run(
        sum(r["done"] for r in runs),
        ended - start,
        sum(r["cpu"] for r in runs),
        sum(r["errors"] for r in runs),
        sum(r["attempts"] for r in runs),
        sum(r["refused"] for r in runs),
        next((r["first_error"] for r in runs if r["first_error"]), ""),
    )


def _vs_official(c: Case, least: float) -> list[Check]:
    return [ratio_check(c, SDM, OFFICIAL, least, f">= {least}x official items/s")]


def _vs_bare(c: Case) -> list[Check]:
    return [
        ratio_check(c, SDM, BARE, 0.9, ">= 0.9x bare grpc.aio calls/s"),
        cpu_check(c, SDM, BARE, CPU_PER_CALL),
    ]


def _rate_checks(
    c: Case, allowed: float, labels: Sequence[str], others: Sequence[str]
) -> list[Check]:
    out = []
    for label in (*labels, *others):
        info = "" if label in labels else "(info) "
        runs = c.runs.get(label, [])
        use = median([r.rate / allowed for r in runs])
        refused = median([r.refused / r.attempts if r.attempts else 0.0 for r in runs])
        calls = median([float(r.refused) for r in runs])
        errors = c.errors(label)
        more = f", {errors} errors" if errors else ""
        out.append(
            Check(
                f"{info}{label}: >= 90 % of the allowed rate",
                f"{use:.0%} of {allowed:g}/s{more}",
                use >= 0.9 and not errors,
                use,
            )
        )
        out.append(
            Check(
                f"{info}{label}: <= 2 % of calls refused",
                f"{refused:.1%} ({calls:g} refused)",
                refused <= 0.02,
                refused,
            )
        )
    return out


async def next_window(window: float) -> None:
    """Sleep until just after the emulator's next window starts (windows are aligned to
    multiples of `window` seconds since the epoch), so no run inherits a spent budget."""
    now = time.time()
    await asyncio.sleep((now // window + 1) * window - now + 0.01)


# -- not timed in rounds ---------------------------------------------------------------------


def memory(env: Env) -> dict[str, Any]:
    """Peak memory while listing the two lengths, each measured in a fresh process."""
    target = env.target("memory")
    out: dict[str, Any] = {"n": list(env.sizes.memory_n), "tracemalloc": [], "rss": []}
    for mode in ("tracemalloc", "rss"):
        for n in env.sizes.memory_n:
            argv = [target.address, target.access_key, target.secret_key, str(n), mode]
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.memory", *argv],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode:
                raise RuntimeError(f"benchmarks.memory {n} {mode} failed: {done.stderr[-2000:]}")
            out[mode].append(json.loads(done.stdout))
    first = out["tracemalloc"][0]
    out["page_worth"] = first["page_models"] + first["page_wire"]
    return out


def memory_checks(m: dict[str, Any]) -> list[Check]:
    page = m["page_worth"]
    small, big = m["n"]
    out = []
    for mode, what in (("tracemalloc", "Python heap"), ("rss", "RSS")):
        a, b = (r["peak"] for r in m[mode])
        growth = b - a
        out.append(
            Check(
                f"{what} peak flat in N: {big:,} vs {small:,} within {MEMORY_PAGES} pages' worth",
                f"{_mb(a)} -> {_mb(b)} ({growth / page:+.2f} pages of {_mb(page)})",
                growth <= MEMORY_PAGES * page,
                growth / page,
            )
        )
    return out


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


async def conversion(env: Env) -> dict[str, Any]:
    raw = await convert.fetch_page(env.target("list"), BIG_PAGE)
    return convert.conversion(raw)
