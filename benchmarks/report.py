"""Results: a JSON document and two rich tables (measurements, then targets)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.cases import Case, Check, median, memory_checks
from benchmarks.contenders import BARE, OFFICIAL


def case_json(case: Case) -> dict[str, Any]:
    contenders = {}
    for label, runs in case.runs.items():
        contenders[label] = {
            "median_rate": median([r.rate for r in runs]),
            "median_cpu_us": median([r.cpu_us for r in runs]),
            "errors": sum(r.errors for r in runs),
            "runs": [r.as_dict() for r in runs],
        }
        for kind, base in case.baselines.items():
            if base in case.runs and base != label:
                ratios = case.ratios(label, base)
                contenders[label][f"ratios_vs_{kind}"] = ratios
                contenders[label][f"median_ratio_vs_{kind}"] = median(ratios)
    return {
        "id": case.id,
        "title": case.title,
        "unit": case.unit,
        "notes": case.notes,
        "contenders": contenders,
        "checks": [check_json(c) for c in case.checks(case)],
    }


def check_json(c: Check) -> dict[str, Any]:
    value = None if c.value is None or math.isnan(c.value) else c.value
    return {"target": c.target, "measured": c.measured, "pass": c.passed, "value": value}


def _num(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def render(doc: dict[str, Any], cases: list[Case], console: Console | None = None) -> None:
    console = console or Console()
    meta = doc["meta"]
    table = Table(
        title=f"Measurements: median of {meta['rounds']} interleaved rounds "
        f"({meta['mode']} mode); ratios are medians of per-round ratios",
        title_justify="left",
    )
    for name, justify in (
        ("case", "left"),
        ("client", "left"),
        ("rate", "right"),
        ("min-max", "right"),
        ("client CPU us per item or call", "right"),
        ("x official", "right"),
        ("x grpc.aio", "right"),
        ("errors", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for case in cases:
        first = True
        for label, runs in case.runs.items():
            rates = [r.rate for r in runs]
            cells = [
                f"{case.title}" if first else "",
                label,
                f"{_num(median(rates))} {case.unit}",
                f"{_num(min(rates))}-{_num(max(rates))}" if rates else "-",
                _num(median([r.cpu_us for r in runs])),
            ]
            for kind in (OFFICIAL, BARE):
                base = case.baselines.get(kind, "")
                ok = base in case.runs and base != label
                cells.append(f"{median(case.ratios(label, base)):.2f}" if ok else "")
            cells.append(str(sum(r.errors for r in runs)))
            table.add_row(*cells, end_section=label == list(case.runs)[-1])
            first = False
    console.print(table)

    conv = doc.get("conversion")
    if conv:
        t = Table(
            title=f"Converting one listed account ({conv['items']} per page, "
            f"{conv['page_bytes']:,} bytes): median (min) us per item",
            title_justify="left",
        )
        t.add_column("")
        for col in (
            "parse (upb)",
            "sdm_async from_pb_Account",
            "official convert_account",
            "ratio",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            "convert",
            *(
                f"{conv[k]['median_us']:.2f} ({conv[k]['min_us']:.2f})"
                for k in ("parse", "sdm_async", "official")
            ),
            f"{conv['ratio']:.2f}x",
        )
        if "sdm_async_read" in conv:  # results written before it was measured lack it
            t.add_row(
                "convert, read created_at and tags",
                "",
                *(
                    f"{conv[k]['median_us']:.2f} ({conv[k]['min_us']:.2f})"
                    for k in ("sdm_async_read", "official_read")
                ),
                f"{conv['ratio_read']:.2f}x",
            )
        console.print(t)

    targets = Table(title="Targets", title_justify="left")
    for col in ("case", "target", "measured", "result"):
        targets.add_column(col)
    rows: list[tuple[str, Check]] = [(c.title, k) for c in cases for k in c.checks(c)]
    if doc.get("memory"):
        n = doc["memory"]["n"][-1]
        rows += [(f"listing {n:,} accounts (memory)", k) for k in memory_checks(doc["memory"])]
    for title, check in rows:
        info = check.target.startswith("(info)")
        result = "" if info else ("[green]PASS[/]" if check.passed else "[red]MISS[/]")
        targets.add_row(title, check.target, check.measured, result)
    console.print(targets)


def markdown(doc: dict[str, Any]) -> str:
    """The results as Markdown tables (for the README), from the JSON document alone."""
    meta = doc["meta"]
    lines = [
        f"Measured {meta['started'][:10]}, {meta['mode']} mode, median of {meta['rounds']} "
        f"interleaved rounds, Python {meta['versions']['python']}, grpcio "
        f"{meta['versions']['grpcio']}, protobuf {meta['versions']['protobuf']}, strongdm "
        f"{meta['versions']['strongdm']}, {meta['cpus']} CPUs"
        + (", emulators and client pinned to one CPU each." if meta.get("pinned") else "."),
        "",
        "| case | client | rate | client CPU per item or call | x official | x grpc.aio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for case in doc["cases"]:
        first = True
        for label, c in case["contenders"].items():
            ratios = [
                f"{c[f'median_ratio_vs_{kind}']:.2f}" if f"median_ratio_vs_{kind}" in c else ""
                for kind in (OFFICIAL, BARE)
            ]
            errors = f" ({c['errors']} errors)" if c["errors"] else ""
            lines.append(
                f"| {case['title'] if first else ''} | {label} | "
                f"{_num(c['median_rate'])} {case['unit']}{errors} | "
                f"{_num(c['median_cpu_us'])} us | {' | '.join(ratios)} |"
            )
            first = False
    conv = doc.get("conversion")
    if conv:
        lines += [
            "",
            "| converting one listed account | us per item (median) |",
            "| --- | ---: |",
            f"| parse (upb, per item of a {conv['items']}-item page) | "
            f"{conv['parse']['median_us']:.2f} |",
            f"| sdm_async `from_pb_Account` | {conv['sdm_async']['median_us']:.2f} |",
            f"| official `convert_account_to_porcelain` | {conv['official']['median_us']:.2f} |",
        ]
        if "sdm_async_read" in conv:
            lines += [
                "| sdm_async, then reading `created_at` and `tags` | "
                f"{conv['sdm_async_read']['median_us']:.2f} |",
                "| official, then reading `created_at` and `tags` | "
                f"{conv['official_read']['median_us']:.2f} |",
            ]
    lines += ["", "| case | target | measured | result |", "| --- | --- | --- | --- |"]
    titles = {c["id"]: c["title"] for c in doc["cases"]}
    rows = [(titles[c["id"]], k) for c in doc["cases"] for k in c["checks"]]
    if doc.get("memory"):
        n = doc["memory"]["n"][-1]
        rows += [(f"listing {n:,} accounts", check_json(k)) for k in memory_checks(doc["memory"])]
    for title, k in rows:
        info = k["target"].startswith("(info)")
        result = "" if info else ("PASS" if k["pass"] else "**MISS**")
        lines.append(f"| {title} | {k['target']} | {k['measured']} | {result} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """`python -m benchmarks.report [RESULTS.json]`: the results as Markdown."""
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent / "results.json"
    sys.stdout.write(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
