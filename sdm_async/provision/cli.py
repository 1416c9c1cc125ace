"""`sdm-async provision plan|apply FILE`: show or make the changes a declaration asks for.

Exit status: 0 when done (or nothing to do), 1 when a change failed or conflicts block the
apply, 2 for a bad command line, declaration or configuration, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from rich.console import Console

from sdm_async.client import Client
from sdm_async.errors import RPCError
from sdm_async.provision.apply import ConflictError, Result, apply
from sdm_async.provision.diff import Plan, plan
from sdm_async.provision.render import plan_table, result_table
from sdm_async.provision.spec import Spec, SpecError, load

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdm-async provision",
        description="Make a StrongDM organisation match a YAML declaration. Connects with "
        "SDM_API_ACCESS_KEY, SDM_API_SECRET_KEY and SDM_API_HOST.",
    )
    parser.add_argument("command", choices=("plan", "apply"), help="show, or make, the changes")
    parser.add_argument("file", help="the declaration (YAML)")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also delete managed objects that are no longer declared",
    )
    parser.add_argument(
        "--rewrite-secrets",
        action="store_true",
        help="send credentials again (the API does not return them, so a password changed "
        "only in the file is not seen otherwise)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plain-text gRPC (for a local emulator)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="calls in flight at once (default: 64)"
    )
    parser.add_argument(
        "--rows", type=int, default=50, help="plan rows shown per kind and action (default: 50)"
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        return _error("--concurrency must be at least 1", 2)
    try:
        spec = load(args.file)
    except SpecError as e:
        return _error(str(e), 2, prefix="")
    except OSError as e:
        return _error(f"cannot read {args.file}: {e.strerror}", 2)
    try:
        client = Client.from_env(insecure=args.insecure)
    except ValueError as e:
        return _error(str(e), 2)
    try:
        return asyncio.run(_run(client, spec, args, Console()))
    except KeyboardInterrupt:
        return _error("interrupted: run `apply` again to finish; it resumes where it stopped", 130)
    except ConflictError as e:
        return _error(str(e), 1, prefix="")
    except RPCError as e:
        return _error(f"{type(e).__name__}: {e.msg}", 1)


def _error(message: str, code: int, prefix: str = "sdm-async provision: ") -> int:
    # Plain text: rich would wrap long lines at 80 columns when stderr is not a terminal.
    print(prefix + message, file=sys.stderr)
    return code


async def _run(client: Client, spec: Spec, args: argparse.Namespace, out: Console) -> int:
    async with client:
        current = await plan(client, spec, prune=args.prune, rewrite_secrets=args.rewrite_secrets)
        _show_plan(current, out, args.rows)
        if args.command == "plan":
            return 1 if current.conflicts else 0
        if current.empty:
            return 0
        result = await apply(
            client,
            spec,
            prune=args.prune,
            plan=current,
            concurrency=args.concurrency,
            progress=True,
        )
    _show_result(result, out)
    return 0 if result.ok else 1


def _show_plan(current: Plan, out: Console, rows: int) -> None:
    if current.changes or current.orphans:
        out.print(plan_table(current, limit=rows))
    for conflict in current.conflicts:
        out.print(f"conflict: {conflict}", style="red", markup=False, highlight=False)
    out.print(f"Plan: {current.summary()}", markup=False, highlight=False)


def _show_result(result: Result, out: Console) -> None:
    if result.done or result.failures:
        out.print(result_table(result))
    for failure in result.failures:
        out.print(f"failed: {failure}", style="red", markup=False, highlight=False)
    out.print(f"Applied: {result.summary()}", markup=False, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
