"""The documentation keeps its promises: its examples run, and its reference is complete.

Code blocks in docs/ fenced as ```{.python .runnable} run here against an in-process
emulator, page by page: a page's blocks run in order in one namespace that starts with
`client` (an `sdm_async.Client` on a fresh emulator), `emu` (that `Emulator`) and `sdm_async`.
A block with top-level `await` runs on the test's event loop; one without runs in a thread, so
that a whole program ending in `asyncio.run(main())` runs as written. A block followed by a
```{.text .output} block must print exactly that text.

The site test reads site/, which `make docs` builds (`make test` builds it first).
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextlib
import html.parser
import inspect
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sdm_async
from sdm_async.testing import Emulator
from tests.conftest import reference_file

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SITE = ROOT / "site"

FENCE = re.compile(
    r"^```\{\.python \.runnable\}\n(?P<code>.*?)^```\n"
    r"(?:\n```\{\.text \.output\}\n(?P<output>.*?)^```\n)?",
    re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    output: str | None


def _blocks(page: Path) -> list[Block]:
    text = page.read_text()
    return [
        Block(text.count("\n", 0, m.start()) + 2, m["code"], m["output"])
        for m in FENCE.finditer(text)
    ]


PAGES = sorted(p for p in DOCS.rglob("*.md") if _blocks(p))


def test_the_guide_has_runnable_examples_on_every_topic() -> None:
    # A marker typo would silently turn every example into an untested one.
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    expected = {
        "index.md",
        "guide/client.md",
        "guide/listing.md",
        "guide/errors.md",
        "guide/bulk.md",
        "guide/provisioning.md",
        "guide/migrating.md",
        "guide/emulator.md",
        "guide/cli.md",
        "guide/fastapi.md",
        "guide/observability.md",
    }
    assert expected <= names, f"pages without runnable examples: {sorted(expected - names)}"
    assert sum(len(_blocks(p)) for p in PAGES) >= 20


async def _run(block: Block, namespace: dict[str, Any], where: str) -> str:
    compiled = compile(block.code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    if compiled.co_flags & inspect.CO_COROUTINE:
        with contextlib.redirect_stdout(out):
            result = eval(compiled, namespace)
            await result
    else:
        # A whole program (asyncio.run) needs a thread without a running loop.
        def program() -> None:
            with contextlib.redirect_stdout(out):
                exec(compiled, namespace)

        await asyncio.to_thread(program)
    return out.getvalue()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
async def test_the_examples_of_a_page_run_against_the_emulator(page: Path) -> None:
    async with Emulator() as emu, emu.client() as client:
        namespace: dict[str, Any] = {
            "__name__": "docs_example",
            "client": client,
            "emu": emu,
            "sdm_async": sdm_async,
        }
        for block in _blocks(page):
            where = f"{page.relative_to(ROOT)}:{block.line}"
            printed = await _run(block, namespace, where)
            if block.output is not None:
                assert printed == block.output, f"{where} printed something else"


class _Ids(html.parser.HTMLParser):
    """Every element id of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)


def _ids(page: Path) -> set[str]:
    parser = _Ids()
    parser.feed(page.read_text())
    return parser.ids


def _site() -> Path:
    reference = SITE / "reference"
    if not (reference / "index.html").exists():
        if os.environ.get("CI"):
            pytest.fail("site/ is missing: `make test` builds it with `make docs` first")
        pytest.skip("site/ is not built: run `make docs`")
    return reference


def test_the_site_documents_every_service_and_method_of_the_official_sdk() -> None:
    reference = _site()
    surface = json.loads(reference_file("official-sdk-surface.json").read_text())
    missing = []
    for attribute, service in surface["client_attributes"].items():
        page = reference / "services" / attribute / "index.html"
        if not page.exists():
            missing.append(f"client.{attribute}: no page")
            continue
        ids = _ids(page)
        if f"client.{attribute}" not in ids:
            missing.append(f"client.{attribute}")
        for method in service["methods"]:
            if not any(i.endswith(f".{service['class']}.{method}") for i in ids):
                missing.append(f"client.{attribute}.{method}")
    assert not missing, f"the reference leaves out: {missing}"


def test_the_site_documents_every_model_and_attribute_of_the_official_sdk() -> None:
    reference = _site()
    surface = json.loads(reference_file("official-sdk-surface.json").read_text())
    ids: set[str] = set()
    for page in (reference / "models").glob("*/index.html"):
        ids |= _ids(page)
    # A class's heading: its module (lowercase parts), then its name; not a member's.
    heading = re.compile(r"sdm_async\._generated\.models\.(?:[a-z_0-9]+\.)+([A-Z]\w*)")
    defined = {m[1]: i for i in ids if (m := heading.fullmatch(i))}
    missing = []
    for name, model in surface["models"].items():
        if f"sdm_async.{name}" not in ids:
            missing.append(name)
            continue
        path = defined.get(name)
        # `slots` are a model's attributes (None for an enum, whose init_params are Enum's).
        for attribute in model.get("slots") or ():
            if path is None or f"{path}.{attribute}" not in ids:
                missing.append(f"{name}.{attribute}")
    assert len(surface["models"]) > 400
    assert not missing, f"the reference leaves out: {missing[:20]} ({len(missing)} in all)"


def test_the_site_documents_every_constant_and_error_of_the_official_sdk() -> None:
    reference = _site()
    surface = json.loads(reference_file("official-sdk-surface.json").read_text())
    constants = _ids(reference / "constants" / "index.html")
    missing = [
        f"{cls}.{value}"
        for cls, values in surface["constants"].items()
        for value in values
        if f"sdm_async.{cls}" not in constants
        or f"sdm_async._generated.constants.{cls}.{value}" not in constants
    ]
    errors = _ids(reference / "errors" / "index.html")
    missing += [name for name in surface["errors"] if f"sdm_async.errors.{name}" not in errors]
    assert not missing, f"the reference leaves out: {missing}"


def test_the_reference_pages_cover_every_service_model_and_constant_of_the_package() -> None:
    # Beyond the official surface: what this package adds (services, models) has pages too.
    from sdm_async._generated import constants, models
    from sdm_async._generated.services import Services
    from tools import docs

    text = "\n".join(page.text for page in docs.pages())
    attributes = set(Services.__annotations__)
    assert len(attributes) >= 72  # the official SDK's, and more
    missing = [f"client.{a}" for a in attributes if f'<a id="client.{a}"></a>' not in text]
    missing += [
        n
        for n in [*models.__all__, *constants.__all__]
        if f'<a id="sdm_async.{n}"></a>' not in text
    ]
    assert not missing, f"no reference entry for: {missing}"


def test_no_page_of_the_site_has_an_anchor_twice() -> None:
    # A public name anchored next to a heading with the same id would make links ambiguous.
    reference = _site()
    doubled = {}
    for page in [*reference.rglob("index.html"), *(SITE / "guide").rglob("index.html")]:
        counts = collections.Counter(re.findall(r'\bid="([^"]+)"', page.read_text()))
        if twice := [i for i, n in counts.items() if n > 1]:
            doubled[page.relative_to(SITE).as_posix()] = twice[:5]
    assert not doubled, f"anchors given twice: {doubled}"
