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
    """Append ``rows`` to the CSV at ``path``, writing the header if the file is new.

    A row with columns the file has not seen yet widens the file: it is rewritten with the new
    columns at the end (empty in the older rows), so that no value lands under another's name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old_rows, columns = [], list(rows[0])
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            old_columns = list(reader.fieldnames or [])
            new_columns = [c for r in rows for c in r if c not in old_columns]
            if not new_columns:
                return _write(path, old_columns, rows, mode="a")
            old_rows = list(reader)
        columns = old_columns + list(dict.fromkeys(new_columns))
    _write(path, columns, old_rows + rows, mode="w")


def _write(path: Path, columns: list[str], rows: list[dict], mode: str) -> None:
    target = path if mode == "a" else path.with_name(f".{path.name}.tmp")
    with open(target, mode, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        if mode == "w":
            writer.writeheader()
        writer.writerows(rows)
    if target != path:
        os.replace(target, path)
