"""The light install: its size, and a cold `genrekit predict` against `python -c "import torch"`.

Usage::

    python bench/light_install.py [--keep DIR] [--runs 5] [--no-csv]

1. Makes two fresh virtual environments and installs this checkout into them with the
   pinned versions (``pip install -c constraints.txt .`` and ``.[serve]``), then
   measures each one's size on disk (``du``), the interpreter and pip included.
2. Times, ``--runs`` times each and alternating, the whole process of a cold
   ``genrekit predict one.mp3`` in the core environment and of ``python -c "import torch"``
   in the full development environment (.venv), and prints the medians side by side
   with their ratio.
3. Checks that the core environment holds no torch, scipy, pandas or scikit-learn.

Needs the package registry (pip). Rows go to bench/results/light_install.csv.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
MP3 = REPO.parent / "shared" / "data" / "fma_small" / "000" / "000002.mp3"
HEAVY = ("torch", "scipy", "pandas", "sklearn")


def make_venv(path: Path, spec: str) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(path / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"), spec],
                   check=True, cwd=REPO)


def size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) / 1024


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd="/")
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", type=Path, help="make the environments here and keep them (default: a temp folder)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--mp3", type=Path, default=MP3)
    p.add_argument("--no-csv", action="store_true")
    args = p.parse_args()
    from results_csv import append_rows, machine

    root = args.keep or Path(tempfile.mkdtemp(prefix="genrekit-light-"))
    core, serve = root / "core", root / "serve"
    for venv, spec in ((core, "."), (serve, ".[serve]")):
        if not (venv / "bin" / "genrekit").exists():
            print(f"installing {spec} into {venv} ...", flush=True)
            make_venv(venv, spec)
    sizes = {"core": size_mb(core), "serve": size_mb(serve)}
    listed = subprocess.run([str(core / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    heavy = [h for h in HEAVY if f"\n{h}==" in "\n" + listed or f"\n{h.replace('sklearn', 'scikit-learn')}==" in
             "\n" + listed]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    predict = [str(core / "bin" / "genrekit"), "predict", str(args.mp3), "--quiet"]
    torch = [str(REPO / ".venv" / "bin" / "python"), "-c", "import torch"]
    timed(predict, env), timed(torch, env)  # first runs warm the disk cache
    times = {"predict": [], "torch": []}
    for _ in range(args.runs):
        times["predict"].append(timed(predict, env))
        times["torch"].append(timed(torch, env))
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{'':46}{'value':>10}")
    print(f"{'core venv on disk (MB)':46}{sizes['core']:10.0f}   target <= 400")
    print(f"{'core + [serve] venv on disk (MB)':46}{sizes['serve']:10.0f}")
    print(f"{'heavy packages in the core venv':46}{', '.join(heavy) or 'none':>10}")
    print(f"{'cold genrekit predict one.mp3 (s, median)':46}{median['predict']:10.2f}")
    label = 'python -c "import torch" (s, median)'
    print(f"{label:46}{median['torch']:10.2f}")
    print(f"{'ratio predict / import torch':46}{median['predict'] / median['torch']:10.2f}   target < 1")
    if not args.no_csv:
        append_rows(REPO / "bench" / "results" / "light_install.csv", [{
            "date": time.strftime("%Y-%m-%d"), "machine": machine(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "core_mb": round(sizes["core"]),
            "serve_mb": round(sizes["serve"]), "heavy": " ".join(heavy),
            "cold_predict_s": round(median["predict"], 3), "import_torch_s": round(median["torch"], 3),
            "ratio": round(median["predict"] / median["torch"], 3), "runs": args.runs}])


if __name__ == "__main__":
    main()
