"""The benchmark's outputs: the Markdown tables, the JSON record, the scaling plot, the docs.

The main table has one row per figure: postoffice's median, the peer's median, the ratio
written so that above 1 means postoffice is ahead (rates: ours ÷ theirs; times and memory:
theirs ÷ ours) and the target the performance issue set. The JSON keeps every sample, not
only the medians, with the machine and the load average around the run, because numbers
from a busy 2-core machine mean little without them. A full run also rewrites the block
between the markers in docs/performance.md.

Standards: none of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.figures import Figure

DOCS_START = "<!-- bench:results:start -->"
DOCS_END = "<!-- bench:results:end -->"
NAMES = {
    "postoffice": "postoffice",
    "postfix": "Postfix",
    "dovecot": "Dovecot",
    "aiosmtpd": "aiosmtpd sink",
}


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "msg/s":
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}"


def figure_table(figures: list[Figure]) -> str:
    """figure | postoffice | peer | ratio | target, one row per figure."""
    rows = [
        "| figure | postoffice | peer | ratio (> 1: postoffice ahead) | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for figure in figures:
        ratio = figure.ratio()
        peer = f"{NAMES[figure.peer]} {_number(figure.median(figure.peer), figure.unit)}"
        rows.append(
            f"| {figure.title} | {_number(figure.median('postoffice'), figure.unit)} | {peer} "
            f"| {'n/a' if ratio is None else f'{ratio:.2f}x'} | {figure.target} |"
        )
    return "\n".join(rows)


def scaling_table(scaling: list[dict[str, Any]]) -> str:
    """Rate, p99 and memory per session count, postoffice and Postfix side by side."""
    levels = sorted({row["sessions"] for row in scaling})
    by_key = {(row["sessions"], row["system"]): row for row in scaling}
    rows = [
        "| sessions | postoffice msg/s | Postfix msg/s | postoffice p99 | Postfix p99 "
        "| postoffice memory | Postfix memory |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in levels:
        cells = []
        for field, unit in (("rate", "msg/s"), ("p99_ms", "ms"), ("memory_mib", "MiB")):
            for system in ("postoffice", "postfix"):
                row = by_key.get((level, system))
                cells.append(_number(row[field] if row else None, unit).removesuffix(" msg/s"))
        rows.append(f"| {level:,} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(scaling: list[dict[str, Any]], path: Path) -> None:
    """Three panels against the session count (log scale): rate, p99, memory (from 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("rate", "accepted msg/s"),
        ("p99_ms", "p99 end of DATA → 250 (ms)"),
        ("memory_mib", "server memory (MiB)"),
    )
    levels = sorted({row["sessions"] for row in scaling})
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 4), constrained_layout=True)
    for axis, (field, label) in zip(axes, panels, strict=True):
        for system, style in (("postoffice", "o-"), ("postfix", "s--")):
            rows = sorted(
                (row for row in scaling if row["system"] == system), key=lambda r: r["sessions"]
            )
            axis.plot(
                [row["sessions"] for row in rows],
                [row[field] for row in rows],
                style,
                label=NAMES[system],
            )
        axis.set_xscale("log")
        axis.set_xticks(levels, [f"{level:,}" for level in levels])
        axis.minorticks_off()
        axis.set_xlabel("concurrent SMTP sessions")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    axes[0].legend()
    figure.suptitle("postoffice vs Postfix: 4 KiB messages, fsync on, one 2-core machine")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", "utf-8")


def figure_record(figure: Figure) -> dict[str, Any]:
    return {
        "key": figure.key,
        "title": figure.title,
        "unit": figure.unit,
        "peer": figure.peer,
        "higher_is_better": figure.higher_is_better,
        "target": figure.target,
        "samples": figure.samples,
        "median": {system: figure.median(system) for system in figure.samples},
        "ratio": figure.ratio(),
    }


def docs_block(summary: str, table: str, scaling: str, image: str) -> str:
    """What stands between the markers in docs/performance.md."""
    return (
        f"{DOCS_START}\n{summary}\n\n{table}\n\n"
        f"Scaling (our asyncio client, 4 KiB messages, one transaction at a time per session):\n\n"
        f"{scaling}\n\n![scaling]({image})\n{DOCS_END}"
    )


def update_docs(path: Path, block: str) -> bool:
    """Replace the marked block of `path`; False when the markers are missing."""
    text = path.read_text("utf-8")
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        return False
    path.write_text(text[:start] + block + text[end + len(DOCS_END) :], "utf-8")
    return True
