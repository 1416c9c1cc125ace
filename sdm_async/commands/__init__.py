"""`sdm-async SERVICE METHOD [ARGS...]`: every method of every service, from a shell.

The commands are made from the generated catalog (services, their methods with the official
parameter names and annotations, unions), which the service classes are generated from as
well, so they follow the client exactly (a test compares them). Help needs neither the
client nor protobuf: they are imported to run a command.
Exit status: 0 done, 1 the API (or the connection) failed, 2 bad usage or input (reported
before any call where possible), 130 interrupted, 141 stdout closed early (`| head`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = ["main", "service_names"]

PROG = "sdm-async"
# A process ended because its reader went away exits as if killed by SIGPIPE (128 + 13),
# as `cat` and `yes` do under `| head`.
EXIT_PIPE = 141


def service_names() -> list[str]:
    """The client's service attributes (`accounts`, `account_grants`, ...)."""
    from sdm_async._generated import catalog

    return sorted(catalog.COMMANDS)


def _python_name(word: str) -> str:
    return word.replace("-", "_")


def _error(message: str, code: int) -> int:
    # One line, plain text (rich would wrap it at 80 columns when stderr is not a terminal).
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return code


@dataclass(frozen=True)
class Param:
    name: str
    annotation: str
    required: bool
    kind: str  # "str", "int", "bool", "list", "model", "filter", "args"


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    doc: str
    params: tuple[Param, ...]
    returns: str
    has_get: bool

    @property
    def listing(self) -> bool:
        return self.returns.startswith("AsyncPager[")

    @property
    def model(self) -> Param | None:
        return next((p for p in self.params if p.kind == "model"), None)

    @property
    def read_first(self) -> bool:
        """An update that reads the object first, so that --set changes only what it names
        (the API replaces the whole object)."""
        model = self.model
        return self.name == "update" and self.has_get and model is not None


# Client attributes whose class is hand-written over the generated one (managed secrets
# encrypt their values end to end): their own docstrings and `get` are read from the class.
_OWN_CLASSES = {"managed_secrets": ("sdm_async._secrets", "ManagedSecrets")}


def methods(service: str) -> dict[str, Method]:
    """The public methods of one service, in the order the generated class defines them."""
    from sdm_async._generated import catalog, models

    entries = catalog.COMMANDS[service]
    docs: dict[str, str] = {}
    has_get = any(e[0] == "get" for e in entries)
    if service in _OWN_CLASSES:
        import importlib
        import inspect

        module, cls_name = _OWN_CLASSES[service]
        cls = getattr(importlib.import_module(module), cls_name)
        has_get = "get" in cls.__dict__  # an update reads first only with a `get` of its own
        for attr, fn in vars(cls).items():
            if not attr.startswith("_") and inspect.isfunction(fn):
                returns = str(inspect.signature(fn).return_annotation)
                docs[attr] = _doc(inspect.getdoc(fn) or "", returns)
    out: dict[str, Method] = {}
    for name, doc, signature, returns in entries:
        params = []
        for pname, ann, variadic in signature:
            base = ann.removesuffix(" | None")
            if variadic:
                kind = "args"
            elif pname == "filter":
                kind = "filter"
            elif base in ("str", "int", "bool"):
                kind = base
            elif base == "list[str]":
                kind = "list"
            elif base in catalog.UNIONS or base in models.__all__:
                kind = "model"
            else:  # pragma: no cover - a new parameter type needs a rule here
                raise TypeError(f"{service}.{name}: no command-line form for {pname}: {ann}")
            params.append(Param(pname, ann, kind != "args", kind))
        out[name] = Method(service, name, docs.get(name, doc), tuple(params), returns, has_get)
    return out


def _doc(doc: str, returns: str) -> str:
    """A docstring's first sentence, less what only Python callers need (the catalog holds
    the generated methods' summaries in this form)."""
    rpc = re.search(r"`(\w+\.\w+)`", doc)
    if returns.startswith("AsyncPager[") and rpc:
        return f"The matching items, streamed page by page ({rpc.group(0)})"
    return doc.split(". `timeout`")[0].split("\n")[0].strip().rstrip(".")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line and exit status 2, pointing at --help."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError("must be true or false")


def _fields(text: str) -> list[str]:
    names = [f.strip() for f in text.split(",") if f.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give field names separated by commas, e.g. id,name")
    return names


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output and connection")
    g.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "yaml", "csv"),
        help="output format (default: table on a terminal, json otherwise)",
    )
    g.add_argument(
        "--fields", type=_fields, metavar="a,b,c", help="the fields (columns) to show, in order"
    )
    g.add_argument("--timeout", type=float, metavar="SECONDS", help="bound for the whole call")
    g.add_argument("--insecure", action="store_true", help="plain-text gRPC (for a local emulator)")
    g.add_argument(
        "--root-certificates",
        metavar="FILE",
        help="PEM file of certificate authorities to trust (also SDM_API_ROOT_CERTIFICATES)",
    )


def parser(method: Method) -> argparse.ArgumentParser:
    svc = method.service
    p = _Parser(
        prog=f"{PROG} {svc} {method.name}",
        description=f"{method.doc}. Connects with SDM_API_ACCESS_KEY, SDM_API_SECRET_KEY and "
        "SDM_API_HOST.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    epilog = []
    for param in method.params:
        if param.kind == "filter":
            p.add_argument(
                "filter",
                nargs="?",
                default="",
                help="filter, e.g. 'name:?' or 'tags:env=prod' (default: everything); each ? "
                "takes the next of args",
            )
        elif param.kind == "args":
            p.add_argument("args", nargs="*", help="values for the ?s in filter")
        elif param.kind == "int":
            p.add_argument(param.name, type=int)
        elif param.kind == "bool":
            p.add_argument(param.name, type=_bool, metavar=f"{param.name}(true|false)")
        elif param.kind == "list":
            p.add_argument(
                param.name,
                type=lambda s: [v for v in s.split(",") if v],
                help="comma-separated",
            )
        elif param.kind == "str":
            p.add_argument(param.name)
        else:
            epilog.append(_model_help(method, param))
            if method.read_first:
                p.add_argument(
                    "id",
                    nargs="?",
                    help=f"the id of the {param.name} to update (or `id:` in the file)",
                )
            p.add_argument(
                "-f",
                "--file",
                metavar="FILE",
                help=f"{param.name}: its attributes, YAML or JSON (- for stdin)",
            )
            p.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="NAME=VALUE",
                help="set one attribute (after the file); tags.KEY=VALUE sets one tag; "
                "lists and nested objects take JSON. Repeatable",
            )
    _common(p)
    p.epilog = "\n\n".join(epilog) or None
    return p


def _model_help(method: Method, param: Param) -> str:
    from sdm_async._generated import catalog, models
    from sdm_async.commands.values import attributes

    base = param.annotation.removesuffix(" | None")
    union = catalog.UNIONS.get(base)  # its members' names, without loading their classes
    choices = [field for field, _ in union[1]] if union is not None else None
    lines = [f"{param.name} ({base}{', optional' if not param.required else ''}):"]
    if method.read_first:
        lines.append(
            "  read with `get` first; the file and --set change only the attributes they name"
        )
    if choices is not None:
        lines.append(f"  `type:` picks the kind of {base}, one of: {', '.join(choices)}")
    else:
        attrs = ", ".join(attributes(getattr(models, base)))
        lines.append(f"  attributes: {attrs}")
    return "\n".join(textwrap.fill(line, 96, subsequent_indent="    ") for line in lines)


def service_help(service: str) -> str:
    found = methods(service)
    svc = service
    width = max(len(n) for n in found) + 2
    lines = [
        f"usage: {PROG} {svc} METHOD [ARGS...] [-o table|json|yaml|csv] [--fields a,b]",
        "",
        f"methods of {service} (`{PROG} {svc} METHOD --help` for one):",
    ]
    for name, method in found.items():
        shown = name
        lines.append(f"  {shown.ljust(width)}{_signature(method)}")
        lines.append(f"  {' ' * width}{method.doc}")
    return "\n".join(lines)


def _signature(method: Method) -> str:
    parts = []
    for p in method.params:
        if p.kind == "filter":
            parts.append("[filter]")
        elif p.kind == "args":
            parts.append("[args...]")
        elif p.kind == "model":
            lead = "[id] " if method.read_first else ""
            parts.append(f"{lead}-f FILE | --set NAME=VALUE  ({p.name})")
        else:
            parts.append(p.name)
    return " ".join(parts)


def main(argv: list[str]) -> int:
    """`argv` starts with the service name."""
    names = service_names()
    service = _python_name(argv[0])
    if service not in names:
        close = difflib.get_close_matches(service, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return _error(f"unknown command {argv[0]!r}{hint}; see `{PROG} --help`", 2)
    rest = argv[1:]
    if not rest or rest[0] in ("-h", "--help"):
        text = service_help(service)
        if rest:
            print(text)
            return 0
        print(text, file=sys.stderr)
        return 2
    found = methods(service)
    name = _python_name(rest[0])
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        svc = service
        return _error(
            f"{svc} has no method {rest[0]!r}{hint}; it has {', '.join(found)} "
            f"(see `{PROG} {svc} --help`)",
            2,
        )
    method = found[name]
    try:
        # Intermixed: options may come between the values (`list "email:?" -o yaml a@b.c`).
        ns = parser(method).parse_intermixed_args(rest[1:])
    except SystemExit as e:  # --help (0) or a usage error already printed (2)
        return e.code if isinstance(e.code, int) else 2
    return _execute(method, ns)


def _execute(method: Method, ns: argparse.Namespace) -> int:
    import asyncio

    from sdm_async.commands.values import UsageError
    from sdm_async.errors import RPCError

    try:
        prepared = _prepare(method, ns)
        client = _client(ns)
    except UsageError as e:
        return _error(str(e), 2)
    try:
        with _core_logs_muted():
            return asyncio.run(_run(method, ns, prepared, client))
    except UsageError as e:
        return _error(str(e), 2)
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except RPCError as e:
        return _error(f"{type(e).__name__}: {e.msg}", 1)
    except TypeError as e:  # the client refused an argument before calling
        return _error(f"{e}", 2)
    except Exception as e:  # a bug: still one line, never a traceback
        return _error(f"unexpected {type(e).__name__}: {e}", 1)


@contextlib.contextmanager
def _core_logs_muted() -> Iterator[None]:
    """gRPC's C core writes some failures to file descriptor 2 itself (a refused TLS
    certificate, in a line of its own before ours), and reads GRPC_VERBOSITY only when it is
    first imported, which `import sdm_async` has done. Point descriptor 2 at /dev/null for the
    call and keep Python's sys.stderr on the real one: the error is reported once, in our
    line. With GRPC_VERBOSITY set, the user asked for those lines: they are kept."""
    if "GRPC_VERBOSITY" in os.environ:
        yield
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to keep clean
        yield
        return
    python_stderr = sys.stderr
    sys.stderr = open(real, "w", encoding=python_stderr.encoding, errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)
        sys.stderr.close()
        sys.stderr = python_stderr


def _quiet_stdout() -> None:
    # The reader is gone: point stdout at /dev/null so that the interpreter's last flush
    # does not fail again and print a traceback.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@dataclass
class _Prepared:
    args: list[Any]
    data: dict[str, Any]
    sets: list[tuple[str, str]]
    fields: list[str] | None


def _prepare(method: Method, ns: argparse.Namespace) -> _Prepared:
    """Everything that can be checked without the API: the file, --set, --fields, the
    filter's placeholders, and the model itself (unless an update must read it first)."""
    from sdm_async.commands.values import UsageError, build, parse_set, read_file

    where = f"{method.service} {method.name}"
    args: list[Any] = []
    data: dict[str, Any] = {}
    sets: list[tuple[str, str]] = []
    for param in method.params:
        if param.kind == "filter":
            placeholders = ns.filter.count("?")
            if placeholders != len(ns.args):
                raise UsageError(
                    f"{where}: the filter has {placeholders} '?' but {len(ns.args)} value(s) "
                    "follow it: give one value per '?'"
                )
            args.append(ns.filter)
            args.extend(ns.args)
        elif param.kind == "args":
            continue
        elif param.kind == "model":
            data = read_file(ns.file) if ns.file else {}
            sets = parse_set(ns.set)
            if method.read_first:
                if not _update_id(ns, data, sets):
                    raise UsageError(
                        f"{where}: give the id of the {param.name} to update (ID, `id:` in "
                        "the file, or --set id=...)"
                    )
                args.append(None)  # filled from `get` once connected
            elif not data and not sets and not param.required:
                args.append(None)
            elif not data and not sets:
                raise UsageError(
                    f"{where}: give the {param.name} with -f FILE or --set NAME=VALUE "
                    f"(see `{PROG} {where} --help`)"
                )
            else:
                annotation = param.annotation.removesuffix(" | None")
                args.append(build(where, annotation, data, sets))
        else:
            args.append(getattr(ns, param.name))
    fields = ns.fields
    if fields:
        known = _known_fields(method)
        bad = [f for f in fields if f.split(".")[0] not in known]
        if bad:
            raise UsageError(
                f"--fields: {where} shows no field {', '.join(bad)}; its fields: "
                f"{', '.join(sorted(known))}"
            )
    if ns.timeout is not None and not ns.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    return _Prepared(args, data, sets, fields)


def _update_id(ns: argparse.Namespace, data: dict[str, Any], sets: list[tuple[str, str]]) -> str:
    """The object to update: ID on the command line, else --set id=..., else the file's id."""
    given = ns.id or next((text for name, text in reversed(sets) if name == "id"), None)
    given = given or data.get("id")
    return given if isinstance(given, str) else ""


def _known_fields(method: Method) -> set[str]:
    """Every field the answer's records can have (for --fields, checked before the call)."""
    from sdm_async._generated import models
    from sdm_async.commands.values import attributes, model_choices

    def of(name: str) -> set[str]:
        name = name.removesuffix(" | None")
        choices = model_choices(name)
        if choices is not None:
            return {"type"}.union(*(attributes(c) for c in choices.values()))
        cls = getattr(models, name, None)
        return set(attributes(cls)) if isinstance(cls, type) else set()

    if method.listing:
        return of(method.returns[len("AsyncPager[") : -1])
    known: set[str] = set()
    response = getattr(models, method.returns, None)
    if isinstance(response, type):
        for field, ann in attributes(response).items():
            known.add(field)
            known |= of(ann)
    return known


def _client(ns: argparse.Namespace) -> Any:
    from sdm_async.client import Client
    from sdm_async.commands.values import UsageError

    options: dict[str, Any] = {"insecure": ns.insecure}
    if ns.root_certificates:
        try:
            with open(ns.root_certificates, "rb") as f:
                options["root_certificates"] = f.read()
        except OSError as e:
            raise UsageError(
                f"--root-certificates {ns.root_certificates}: cannot read it ({e.strerror})"
            ) from None
    try:
        return Client.from_env(**options)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None


async def _run(method: Method, ns: argparse.Namespace, prepared: _Prepared, client: Any) -> int:
    from sdm_async._model import Model
    from sdm_async.commands.output import record, writer
    from sdm_async.commands.values import build

    out = writer(ns.output, prepared.fields)
    async with client:
        service = getattr(client, method.service)
        call: Callable[..., Any] = getattr(service, method.name)
        args = prepared.args
        if method.read_first:
            model = method.model
            assert model is not None
            where = f"{method.service} update"
            given_id = _update_id(ns, prepared.data, prepared.sets)
            current = await service.get(given_id, timeout=ns.timeout)
            obj = next(
                v
                for f in current.__slots__
                if f not in ("meta", "rate_limit") and isinstance(v := getattr(current, f), Model)
            )
            annotation = model.annotation.removesuffix(" | None")
            args = [build(where, annotation, prepared.data, prepared.sets, base=obj)]
        if method.listing:
            async with call(*args, timeout=ns.timeout) as pager:
                async for item in pager:
                    out.item(_as_record(item))
        else:
            out.one(record(await call(*args, timeout=ns.timeout)))
        out.close(method.listing)
    return 0


def _as_record(item: Any) -> dict[str, Any]:
    from sdm_async.commands.output import plain

    data = plain(item)
    return data if isinstance(data, dict) else {"value": data}
