"""The API reference of the documentation site, made from the code each time it is built.

mkdocs loads this file as a hook (`hooks:` in mkdocs.yml): `on_files` adds the reference pages
as generated files and `on_config` puts them in the navigation, so nothing under
docs/reference is written to disk or kept in git, and the reference cannot go stale. Each
page points mkdocstrings at the module that defines an object (the generated models and
services, or the hand-written modules) and titles it with its public name (`sdm_async.User`,
`client.roles`), since the package root re-exports them and that may change how.

`python -m tools.docs [DIR]` writes the pages to DIR (default build/docs-reference) for a look
without mkdocs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if typing.TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

REFERENCE = "reference"
MODELS_PACKAGE = "sdm_async._generated.models"
SERVICES_PACKAGE = "sdm_async._generated.services"


@dataclass(frozen=True)
class Service:
    attribute: str  # client.<attribute>
    cls: type
    wire: str  # the API's service name (v1.<wire>)
    methods: tuple[tuple[str, str], ...]  # (python method, wire method)
    snapshot: tuple[str, ...]  # the methods of client.snapshot_at(t).<attribute>


@dataclass(frozen=True)
class Page:
    path: str  # under docs/, e.g. reference/services/roles.md
    title: str  # in the navigation
    text: str


def _directive(path: str, heading: str, *, toc: str | None = None, **options: Any) -> str:
    """A mkdocstrings block for the object at `path`, headed by its public name.

    The empty anchor gives the public name its own link target (the heading's anchor is the
    defining path, `sdm_async._generated.models.accounts.User`)."""
    # Where the public name is the defining path, the heading's own anchor is that name.
    anchor = [] if path == heading else [f'<a id="{heading}"></a>', ""]
    lines = [*anchor, f"::: {path}", "    options:"]
    lines.append(f'      heading: "{heading}"')
    lines.append(f'      toc_label: "{toc or heading}"')
    for key, value in options.items():
        lines.append(f"      {key}: {_yaml(value)}")
    return "\n".join(lines) + "\n"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return f'"{value}"'


def services() -> list[Service]:
    """Every service attribute of the client, in the order the client declares them."""
    from sdm_async._generated import catalog
    from sdm_async._generated.services import Services, SnapshotServices

    wire_of = {attr: (name, methods) for name, (attr, _, methods) in catalog.SERVICES.items()}
    classes = _service_classes()
    snapshots = _annotated(SnapshotServices)
    found = []
    for attribute, class_name in _annotated(Services).items():
        cls = classes[class_name]
        wire, methods = wire_of[attribute]
        python_names = _public_methods(cls)
        # The catalog's kind is the Python name for the CRUD methods, not for the rest.
        pairs = tuple((_python_name(m, python_names), m) for m in methods)
        snap = snapshots.get(attribute)
        snapshot = tuple(_public_methods(classes[snap])) if snap is not None else ()
        found.append(Service(attribute, cls, wire, pairs, snapshot))
    return found


def _annotated(cls: type) -> dict[str, str]:
    """Attribute -> the class name it is annotated with. The annotations are read as text:
    the package may import the classes for type checkers only, so they need not resolve."""
    return {
        name: value if isinstance(value, str) else value.__name__
        for name, value in vars(cls).get("__annotations__", {}).items()
    }


def _service_classes() -> dict[str, type]:
    """Every class defined in the generated services modules, by name."""
    package = importlib.import_module(SERVICES_PACKAGE)
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(package.__path__, SERVICES_PACKAGE + "."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == info.name:
                found[name] = value
    return found


def _public_methods(cls: type) -> list[str]:
    return [
        name
        for name, member in cls.__dict__.items()
        if not name.startswith("_") and inspect.isfunction(member)
    ]


def _python_name(wire_method: str, names: list[str]) -> str:
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in wire_method).lstrip("_")
    squashed = snake.replace("_", "")
    for name in names:
        if name == snake or name.replace("_", "") == squashed:
            return name
    raise LookupError(f"no Python method for {wire_method} among {names}")


def model_modules() -> list[tuple[str, list[str]]]:
    """(module, the public names it defines) for every generated models module."""
    package = importlib.import_module(MODELS_PACKAGE)
    found = []
    for info in pkgutil.walk_packages(package.__path__, MODELS_PACKAGE + "."):
        module = importlib.import_module(info.name)
        # A module without __all__ (enums) exports the public classes it defines.
        exported = getattr(module, "__all__", None) or [
            name for name, value in vars(module).items() if inspect.isclass(value)
        ]
        names = [
            name
            for name in exported
            if not name.startswith("_")
            and (
                getattr(getattr(module, name), "__module__", info.name) == info.name
                or not inspect.isclass(getattr(module, name))
            )
        ]
        if names:
            found.append((info.name, names))
    return sorted(found, key=lambda item: item[0])


def _model_page_name(module: str) -> str:
    return module.removeprefix(MODELS_PACKAGE + ".").replace(".", "-")


def _services_pages(all_services: list[Service]) -> list[Page]:
    pages = []
    for s in all_services:
        module = s.cls.__module__
        rows = "\n".join(
            f"| [`{py}`](#{module}.{s.cls.__name__}.{py}) | `v1.{s.wire}/{wire}` |"
            for py, wire in s.methods
        )
        snapshot = (
            f"`client.snapshot_at(t).{s.attribute}` has "
            + ", ".join(f"`{m}`" for m in s.snapshot)
            + ": the same methods, answering as of time `t`."
            if s.snapshot
            else "It has no snapshot form (`client.snapshot_at(t)` does not offer it)."
        )
        text = (
            f"# client.{s.attribute}\n\n"
            f"`client.{s.attribute}` (a `{s.cls.__name__}`) calls the API's `v1.{s.wire}` "
            "service. Every method is a coroutine, but for `list`, which returns "
            "an [`AsyncPager`](../pagination.md) at once; every one takes `timeout` "
            "(seconds for the whole call, retries and waits included).\n\n"
            f"| method | RPC |\n| --- | --- |\n{rows}\n\n{snapshot}\n\n"
            + _directive(
                f"{module}.{s.cls.__name__}",
                f"client.{s.attribute}",
                toc=s.cls.__name__,
                # The client makes its services: their constructor is not for callers.
                show_bases=False,
                merge_init_into_class=False,
                show_root_full_path=False,
            )
        )
        pages.append(Page(f"{REFERENCE}/services/{s.attribute}.md", s.attribute, text))
    return pages


def _models_pages(modules: list[tuple[str, list[str]]]) -> list[Page]:
    pages = []
    for module, names in modules:
        short = _model_page_name(module)
        body = "\n".join(
            _directive(f"{module}.{name}", f"sdm_async.{name}", toc=name) for name in names
        )
        about = (
            "Enumerations of the API, with its names as values."
            if short == "enums"
            else "Every model takes its attributes as keyword arguments, all optional, and "
            "prints with credentials masked."
        )
        text = (
            f"# Models: {short}\n\n"
            f"Defined in `{module}`; import them from `sdm_async` "
            f"(`sdm_async.{names[0]}`). {about}\n\n" + body
        )
        pages.append(Page(f"{REFERENCE}/models/{short}.md", short, text))
    return pages


def _constants_page() -> Page:
    from sdm_async._generated import constants

    body = "\n".join(
        _directive(f"sdm_async._generated.constants.{name}", f"sdm_async.{name}", toc=name)
        for name in constants.__all__
    )
    text = (
        "# Constants\n\n"
        "Classes of the string values the API uses, with the official SDK's names "
        "(`sdm_async.Permission.ROLE_LIST`, `sdm_async.APIHost.EU`).\n\n" + body
    )
    return Page(f"{REFERENCE}/constants.md", "Constants", text)


# The hand-written public API: page -> (title, intro, [(defining path, public name)]).
HAND_WRITTEN: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "client": (
        "Client",
        "The client, its options and the retry policy. See the guide's "
        "[client page](../guide/client.md).",
        [
            ("sdm_async.client.Client", "sdm_async.Client"),
            ("sdm_async.client.ClientOptions", "sdm_async.ClientOptions"),
            ("sdm_async.client.EnvClientOptions", "sdm_async.EnvClientOptions"),
            ("sdm_async.client.SnapshotClient", "sdm_async.SnapshotClient"),
            ("sdm_async._retry.RetryPolicy", "sdm_async.RetryPolicy"),
            ("sdm_async._rpc.Attempt", "sdm_async.Attempt"),
            ("sdm_async._rpc.SigningInterceptor", "sdm_async.SigningInterceptor"),
        ],
    ),
    "pagination": (
        "AsyncPager",
        "What every `list` method returns. See [Listing and filters](../guide/listing.md).",
        [("sdm_async._pagination.AsyncPager", "sdm_async.AsyncPager")],
    ),
    "bulk": (
        "Bulk jobs",
        "`client.bulk` and `client.bulk_iter` (on [`Client`](client.md)) give these. See "
        "[Bulk jobs and rate limits](../guide/bulk.md).",
        [
            ("sdm_async.bulk.Outcome", "sdm_async.Outcome"),
            ("sdm_async.bulk.BulkIterator", "sdm_async.BulkIterator"),
        ],
    ),
    "errors": (
        "Errors",
        "Every error a call raises is an `RPCError`. See [Errors and retries](../guide/errors.md).",
        [("sdm_async.errors", "sdm_async.errors")],
    ),
    "model": (
        "Model",
        "The base class of every model.",
        [("sdm_async._model.Model", "sdm_async.Model")],
    ),
    "testing": (
        "Emulator",
        "`sdm_async.testing`: the emulator in your process, and its pytest plugin. See "
        "[The emulator](../guide/emulator.md).",
        [
            ("sdm_async.testing.emulator.Emulator", "sdm_async.testing.Emulator"),
            ("sdm_async.testing.status.StartError", "sdm_async.testing.StartError"),
            ("sdm_async.testing.pytest_plugin", "sdm_async.testing.pytest_plugin"),
        ],
    ),
    "provision": (
        "Provisioning",
        "`sdm_async.provision`: declare an organisation in YAML and make it so. See "
        "[Provisioning](../guide/provisioning.md).",
        [
            ("sdm_async.provision.spec.load", "sdm_async.provision.load"),
            ("sdm_async.provision.spec.parse", "sdm_async.provision.parse"),
            ("sdm_async.provision.diff.plan", "sdm_async.provision.plan"),
            ("sdm_async.provision.apply.apply", "sdm_async.provision.apply"),
            ("sdm_async.provision.export.export", "sdm_async.provision.export"),
            ("sdm_async.provision.org.read", "sdm_async.provision.read"),
            ("sdm_async.provision.diff.diff", "sdm_async.provision.diff"),
            ("sdm_async.provision.spec.Spec", "sdm_async.provision.Spec"),
            ("sdm_async.provision.spec.Declared", "sdm_async.provision.Declared"),
            ("sdm_async.provision.diff.Plan", "sdm_async.provision.Plan"),
            ("sdm_async.provision.diff.Change", "sdm_async.provision.Change"),
            ("sdm_async.provision.apply.Result", "sdm_async.provision.Result"),
            ("sdm_async.provision.apply.Failure", "sdm_async.provision.Failure"),
            ("sdm_async.provision.apply.Tokens", "sdm_async.provision.Tokens"),
            ("sdm_async.provision.org.Org", "sdm_async.provision.Org"),
            ("sdm_async.provision.spec.SpecError", "sdm_async.provision.SpecError"),
            ("sdm_async.provision.spec.Problem", "sdm_async.provision.Problem"),
            ("sdm_async.provision.apply.ConflictError", "sdm_async.provision.ConflictError"),
            ("sdm_async.provision.kinds.MARK_KEY", "sdm_async.provision.MARK_KEY"),
            ("sdm_async.provision.kinds.MARK_VALUE", "sdm_async.provision.MARK_VALUE"),
        ],
    ),
    "fastapi": (
        "FastAPI",
        "`sdm_async.fastapi` (`pip install 'sdm-async[fastapi]'`). See "
        "[FastAPI](../guide/fastapi.md).",
        [("sdm_async.fastapi", "sdm_async.fastapi")],
    ),
    "otel": (
        "OpenTelemetry",
        "`sdm_async.otel` (`pip install 'sdm-async[otel]'`). See "
        "[Observability](../guide/observability.md).",
        [("sdm_async.otel", "sdm_async.otel")],
    ),
}


# Per-object options: the client's service attributes come from its base class.
OPTIONS: dict[str, dict[str, Any]] = {
    "sdm_async.client.Client": {"inherited_members": True},
    "sdm_async.client.SnapshotClient": {"inherited_members": True},
}


def _hand_written_pages() -> list[Page]:
    pages = []
    for name, (title, intro, objects) in HAND_WRITTEN.items():
        body = "\n".join(
            _directive(path, public, toc=public.rsplit(".", 1)[-1], **OPTIONS.get(path, {}))
            for path, public in objects
        )
        pages.append(Page(f"{REFERENCE}/{name}.md", title, f"# {title}\n\n{intro}\n\n{body}"))
    return pages


def _index_page(
    all_services: list[Service], modules: list[tuple[str, list[str]]], hand: list[Page]
) -> Page:
    service_rows = "\n".join(
        f"| [`client.{s.attribute}`](services/{s.attribute}.md) | `{s.wire}` | "
        + ", ".join(f"`{py}`" for py, _ in s.methods)
        + " |"
        for s in all_services
    )
    hand_rows = "\n".join(f"- [{p.title}]({p.path.removeprefix(REFERENCE + '/')})" for p in hand)
    model_rows = "\n".join(
        f"| [{_model_page_name(module)}](models/{_model_page_name(module)}.md) | "
        + ", ".join(f"[`{n}`](models/{_model_page_name(module)}.md#sdm_async.{n})" for n in names)
        + " |"
        for module, names in modules
    )
    count = sum(len(names) for _, names in modules)
    text = f"""# API reference

Made from the code each time the site is built. Public names are the ones to import:
`sdm_async.Client`, `sdm_async.User`, `sdm_async.errors.NotFoundError`; the modules named
under each heading are where the code lives.

## The hand-written API

{hand_rows}
- [Constants](constants.md)

## Services

One attribute of the client per service of the API ({len(all_services)}).

| attribute | API service | methods |
| --- | --- | --- |
{service_rows}

## Models

{count} model classes and union aliases, one page per group.

| group | models |
| --- | --- |
{model_rows}
"""
    return Page(f"{REFERENCE}/index.md", "Overview", text)


@functools.cache
def pages() -> tuple[Page, ...]:
    all_services = services()
    modules = model_modules()
    hand = _hand_written_pages()
    return (
        _index_page(all_services, modules, hand),
        *hand,
        _constants_page(),
        *_services_pages(all_services),
        *_models_pages(modules),
    )


def nav() -> list[Any]:
    """The navigation entries of the reference, in page order."""
    entries: list[Any] = []
    services_nav: list[Any] = []
    models_nav: list[Any] = []
    for page in pages():
        if page.path.startswith(f"{REFERENCE}/services/"):
            services_nav.append({f"client.{page.title}": page.path})
        elif page.path.startswith(f"{REFERENCE}/models/"):
            models_nav.append({page.title: page.path})
        else:
            entries.append({page.title: page.path})
    entries.append({"Services": services_nav})
    entries.append({"Models": models_nav})
    return entries


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    config.nav = [*(config.nav or []), {"API reference": nav()}]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    from mkdocs.structure.files import File

    for page in pages():
        files.append(File.generated(config, page.path, content=page.text))
    return files


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "build/docs-reference")
    for page in pages():
        target = out / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page.text)
    print(f"{len(pages())} pages in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
