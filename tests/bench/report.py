"""Benchmark figures: each benchmark records its numbers here, and BENCHMARKS.md is
written from all of them, with the machine, the date and a plot.

Figures are written down, never asserted: a test does not fail because a machine is slow.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RESULTS = PROJECT_ROOT / ".bench" / "results.json"
MARKDOWN = PROJECT_ROOT / "BENCHMARKS.md"
PLOT = PROJECT_ROOT / "docs" / "benchmarks.png"


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def record(name: str, title: str, figures: dict[str, Any], notes: str = "") -> None:
    """Keep one benchmark's figures (replacing an earlier run of the same benchmark)."""
    RESULTS.parent.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = {"title": title, "figures": figures, "notes": notes}
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True))


def _command(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "not available"


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": f"{cpu} ({os.cpu_count()} cores)",
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "docker": _command("docker", "version", "--format", "{{.Server.Version}}") or "not running",
    }


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _plot(results: dict[str, Any]) -> bool:
    """Bar charts of the platform-against-baseline figures, where they were measured."""
    pairs = [
        (results[name]["title"], results[name]["figures"].get("plot"))
        for name in sorted(results)
        if results[name]["figures"].get("plot")
    ]
    if not pairs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    for axis, (title, bars) in zip(axes[0], pairs, strict=True):
        labels = list(bars)
        axis.bar(
            labels, [bars[label] for label in labels], color=["#4c72b0", "#dd8452"][: len(labels)]
        )
        axis.set_title(title, fontsize=10)
        axis.set_ylabel("seconds")
        for index, label in enumerate(labels):
            axis.annotate(f"{bars[label]:.1f}", (index, bars[label]), ha="center", va="bottom")
    figure.tight_layout()
    PLOT.parent.mkdir(exist_ok=True)
    figure.savefig(PLOT, dpi=100)
    return True


def write_markdown() -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (tests/bench). Each figure is measured against a baseline",
        "in the same run, on the machine below; medians of repeated runs where repeated.",
        "Why the platform sets the Airflow intervals it does, and what each costs:",
        "[docs/benchmarks.md](docs/benchmarks.md).",
        "",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in machine().items()),
        "",
    ]
    for name in sorted(results):
        entry = results[name]
        lines += [f"## {entry['title']}", "", "| figure | value |", "|---|---|"]
        lines += [
            f"| {key} | {_format(value)} |"
            for key, value in entry["figures"].items()
            if key != "plot"
        ]
        if entry["notes"]:
            lines += ["", entry["notes"]]
        lines.append("")
    if _plot(results):
        lines += ["![task overhead and burst](docs/benchmarks.png)", ""]
    MARKDOWN.write_text("\n".join(lines))
