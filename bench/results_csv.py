"""Benchmark results are kept as CSV rows under bench/results/, appended run after run."""
from __future__ import annotations

import csv
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, e.g. ``"AMD EPYC"`` (speed figures differ by CPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def machine() -> str:
    """``"2-core AMD EPYC (x86_64)"``: the core count and CPU model."""
    return f"{os.cpu_count()}-core {cpu_model()} ({platform.machine()})"


def append_rows(path, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path``, writing the header if the file is new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
