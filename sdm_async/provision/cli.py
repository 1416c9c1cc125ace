"""`sdm-async provision plan|apply FILE`: show or make the changes a declaration asks for;
`sdm-async provision export [-o FILE]`: write one from an organisation.

Exit status: 0 when done (or nothing to do), 1 when a change failed, conflicts block the
apply (whether or not anything else was to do) or a one-time token could not be saved, 2 for
a bad command line, declaration or configuration, 130 when interrupted.

Tokens: creating a service or a node returns a token the API never shows again. `apply`
writes them to `--secrets-out FILE` (created with mode 0600; an existing file is never
overwritten) or prints them once with `--secrets-out -`, and refuses to create such objects
without one of the two, before any change.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported once the arguments are parsed: `--help` and a usage error need none of them
    # (nor grpc, protobuf, YAML or rich).
    from rich.console import Console

    from sdm_async.client import Client
    from sdm_async.provision.apply import Result, Tokens
    from sdm_async.provision.diff import Plan
    from sdm_async.provision.spec import Spec

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdm-async provision",
        description="Make a StrongDM organisation match a YAML declaration. Connects with "
        "SDM_API_ACCESS_KEY, SDM_API_SECRET_KEY and SDM_API_HOST. `sdm-async provision "
        "export` writes a declaration from an organisation (see `export --help`).",
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
        "--take-over",
        action="append",
        default=[],
        metavar="OWNER",
        help="adopt declared objects that another declaration owns (tagged managed-by: "
        "OWNER); without it they are conflicts. Repeatable",
    )
    parser.add_argument(
        "--secrets-out",
        metavar="FILE",
        help="apply: write the one-time tokens of created services and nodes to FILE as JSON "
        "(created with mode 0600, never overwritten), or print them once with `-`",
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


def _export_parser() -> argparse.ArgumentParser:
    from sdm_async.provision.kinds import MARK_VALUE  # loads the resource classes

    parser = argparse.ArgumentParser(
        prog="sdm-async provision export",
        description="Write the organisation as a declaration that `plan` and `apply` read "
        "(to adopt it: export with --owner, plan, apply). Credentials are never written: "
        "${VAR} placeholders stand for them, listed at the top of the file. Connects with "
        "SDM_API_ACCESS_KEY, SDM_API_SECRET_KEY and SDM_API_HOST.",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (replaced) rather than stdout"
    )
    parser.add_argument(
        "--only",
        metavar="SECTIONS",
        help="sections to write, separated by commas: users, services, roles, resources, "
        "nodes, attachments, grants (links need their ends' sections; default: all)",
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="only objects with this tag (repeatable: all of them); links when both ends are",
    )
    parser.add_argument(
        "--owner",
        default=MARK_VALUE,
        help="the file's `owner:`: unmarked objects and those tagged managed-by: OWNER are "
        "written (apply marks the unmarked ones); other owners' objects are left out "
        f"(default: {MARK_VALUE})",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="plain-text gRPC (for a local emulator)"
    )
    return parser


def _export(argv: list[str]) -> int:
    args = _export_parser().parse_args(argv)
    import asyncio

    from sdm_async.client import Client
    from sdm_async.errors import RPCError
    from sdm_async.provision.export import check_owner, export, parse_tags, sections

    try:  # every argument is checked before any call
        kinds = sections(args.only.split(",") if args.only is not None else None)
        tags = parse_tags(args.tag)
        owner = check_owner(args.owner)
        client = Client.from_env(insecure=args.insecure)
    except ValueError as e:
        return _error(str(e), 2)
    if args.output is not None and not Path(args.output).parent.is_dir():
        return _error(f"-o {args.output}: no such directory", 2)

    async def run() -> str:
        async with client:
            return await export(client, only=[k.section for k in kinds], tags=tags, owner=owner)

    try:
        text = asyncio.run(run())
    except ValueError as e:
        return _error(str(e), 2)
    except KeyboardInterrupt:
        return _error("interrupted: nothing was written", 130)
    except RPCError as e:
        return _error(f"{type(e).__name__}: {e.msg}", 1)
    if args.output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as e:
        return _error(f"cannot write {args.output}: {e.strerror}", 1)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["export"]:
        return _export(argv[1:])
    args = _parser().parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        return _error("--concurrency must be at least 1", 2)
    import asyncio

    from rich.console import Console

    from sdm_async.client import Client
    from sdm_async.errors import RPCError
    from sdm_async.provision.apply import ConflictError, Tokens
    from sdm_async.provision.spec import SpecError, load

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
    secrets: _Secrets | None = None
    if args.command == "apply" and args.secrets_out not in (None, "-"):
        try:
            secrets = _Secrets(args.secrets_out)
        except FileExistsError:
            return _error(
                f"--secrets-out {args.secrets_out} already exists: tokens are never written "
                "over a file; move it away or give a new path",
                2,
            )
        except OSError as e:
            return _error(f"cannot create --secrets-out {args.secrets_out}: {e.strerror}", 2)
    out = Console()
    tokens = Tokens()  # filled as creations succeed: saved however the run ends
    code = saved = 1
    try:
        code = asyncio.run(_run(client, spec, args, out, tokens))
    except KeyboardInterrupt:
        code = _error("interrupted: run `apply` again to finish; it resumes where it stopped", 130)
    except ConflictError as e:
        code = _error(str(e), 1, prefix="")
    except RPCError as e:
        code = _error(f"{type(e).__name__}: {e.msg}", 1)
    finally:
        try:
            saved = _save_tokens(tokens, args.secrets_out, secrets, out)
        finally:
            if secrets is not None:
                secrets.close()
    return code if saved or code else 1


class _Secrets:
    """The --secrets-out file: made before any change (so that a bad path stops the apply
    early), owner-only, never over an existing file; removed again if no token was written."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.written = False

    def write(self, tokens: Tokens) -> None:
        data = (json.dumps(dict(tokens), indent=2, sort_keys=True) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]
        os.fsync(self.fd)
        self.written = True

    def close(self) -> None:
        os.close(self.fd)
        if not self.written:
            os.unlink(self.path)


def _error(message: str, code: int, prefix: str = "sdm-async provision: ") -> int:
    # Plain text: rich would wrap long lines at 80 columns when stderr is not a terminal.
    print(prefix + message, file=sys.stderr)
    return code


async def _run(
    client: Client, spec: Spec, args: argparse.Namespace, out: Console, tokens: Tokens
) -> int:
    from sdm_async.provision.apply import TOKEN_KINDS, apply
    from sdm_async.provision.diff import plan

    async with client:
        current = await plan(
            client,
            spec,
            prune=args.prune,
            rewrite_secrets=args.rewrite_secrets,
            take_over=args.take_over,
        )
        _show_plan(current, out, args.rows)
        if current.conflicts:
            if args.command == "apply":
                _error(f"nothing was changed: {len(current.conflicts)} conflict(s) block it", 1)
            return 1
        if args.command == "plan" or current.empty:
            return 0
        tokened = [
            f"{c.kind.name} {c.key!r}"
            for c in current.changes
            if c.kind in TOKEN_KINDS and c.action in ("create", "replace")
        ]
        if tokened and args.secrets_out is None:
            return _error(
                f"nothing was changed: this apply creates {', '.join(tokened)}, whose tokens "
                "the API shows only once; give --secrets-out FILE to save them (mode 0600), "
                "or --secrets-out - to print them",
                2,
            )
        result = await apply(
            client,
            spec,
            prune=args.prune,
            plan=current,
            concurrency=args.concurrency,
            progress=True,
            take_over=args.take_over,
            tokens=tokens,
        )
    _show_result(result, out)
    return 0 if result.ok and not result.notes else 1


def _save_tokens(tokens: Tokens, where: str | None, secrets: _Secrets | None, out: Console) -> bool:
    """Hand the tokens over where the user asked; False if some could not be."""
    if not tokens:
        return True
    if secrets is not None:
        try:
            secrets.write(tokens)
        except OSError as e:
            _error(
                f"{len(tokens)} token(s) were created but could not be written to "
                f"{secrets.path} ({e.strerror}): they are lost; delete those objects and "
                "apply again to get new ones",
                1,
            )
            return False
        out.print(f"Tokens: {len(tokens)} written to {secrets.path}", markup=False)
        return True
    if where == "-":
        _error(f"{len(tokens)} token(s) follow, shown this once: save them now", 0)
        for key, token in tokens.items():
            out.print(f"token {key}: {token}", markup=False, highlight=False, soft_wrap=True)
        return True
    names = ", ".join(tokens)
    _error(
        f"{len(tokens)} token(s) were created and not saved ({names}): delete those objects "
        "and apply again with --secrets-out FILE to get new ones",
        1,
    )
    return False


def _show_plan(current: Plan, out: Console, rows: int) -> None:
    from sdm_async.provision.render import plan_table

    if current.changes or current.orphans:
        out.print(plan_table(current, limit=rows))
    for conflict in current.conflicts:
        out.print(f"conflict: {conflict}", style="red", markup=False, highlight=False)
    out.print(f"Plan: {current.summary()}", markup=False, highlight=False)


def _show_result(result: Result, out: Console) -> None:
    from sdm_async.provision.render import result_table

    if result.done or result.failures:
        out.print(result_table(result))
    for failure in result.failures:
        out.print(f"failed: {failure}", style="red", markup=False, highlight=False)
    for note in result.notes:
        out.print(f"note: {note}", style="yellow", markup=False, highlight=False)
    out.print(f"Applied: {result.summary()}", markup=False, highlight=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
