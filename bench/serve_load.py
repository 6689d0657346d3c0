"""Load test of ``genrekit serve``: many uploads of real audio, a few at a time.

Usage: python bench/serve_load.py [--requests 50] [--concurrency 8] [--workers-threads 2] [--model M]
       [--python LIGHT_VENV/bin/python]

Starts ``python -m genrekit serve`` as a subprocess on a free loopback port, sends
``--requests`` uploads of real audio from ../shared/data (rotating over a few FMA MP3s
and a GTZAN WAV), ``--concurrency`` at a time, and prints requests per second beside
the server's peak resident memory (VmHWM from /proc), with the median and p95 latency.
Appends one row to bench/results/serve_load.csv.

tests/test_service.py starts its real servers with :class:`ServerProcess` and runs a
smaller load test with :func:`run_load` (it imports this file).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GENREKIT_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results" / "serve_load.csv"
# different files (two formats): each has its own probabilities, so a mix-up shows
LOAD_FILES = ["fma_small/000/000002.mp3", "fma_small/000/000005.mp3", "fma_small/000/000010.mp3",
              "gtzan/jazz/jazz.00000.wav"]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m genrekit serve`` in a subprocess, on loopback.

    Parameters
    ----------
    args : list of str
        Extra ``genrekit serve`` options (limits, worker threads).
    tmp_dir : Path
        The service's temporary folder (``GENREKIT_SERVE_TMPDIR``).
    log_path : Path
        Where the server's output goes.
    python : str
        The interpreter to run it with (another virtual environment: its installed genrekit).
    """

    def __init__(self, args, tmp_dir: Path, log_path: Path, startup_timeout: float = 120.0,
                 python: str = sys.executable):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_dir = Path(tmp_dir)
        self.log_path = Path(log_path)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = [str(REPO)] if python == sys.executable else []  # another venv runs its own installed genrekit
        env = dict(os.environ, GENREKIT_SERVE_TMPDIR=str(self.tmp_dir),
                   PYTHONPATH=os.pathsep.join(filter(None, [*path, os.environ.get("PYTHONPATH")])))
        cmd = [python, "-m", "genrekit", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "warning", *map(str, args)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(startup_timeout)

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{key} not found in /proc/{self.proc.pid}/status")

    def peak_rss_mb(self) -> float:
        """The server's peak resident memory so far (VmHWM), in MiB."""
        return self._status("VmHWM") / 1024

    def rss_mb(self) -> float:
        """The server's resident memory now (VmRSS), in MiB."""
        return self._status("VmRSS") / 1024

    def open_files(self) -> int:
        """File descriptors the server holds now (sockets, uploads, libraries)."""
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the server to exit; its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class LoadResult:
    """Every request's file, status, latency and JSON, and the wall time of the whole run."""

    files: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    latencies: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        p95 = lat[min(len(lat) - 1, max(0, int(round(0.95 * len(lat))) - 1))]
        return {"requests": len(lat), "errors": sum(s != 200 for s in self.statuses),
                "median_s": round(statistics.median(lat), 3), "p95_s": round(p95, 3),
                "rps": round(len(lat) / self.wall_s, 2), "wall_s": round(self.wall_s, 2)}


def run_load(url: str, files, n_requests: int = 50, concurrency: int = 8, timeout: float = 120.0) -> LoadResult:
    """Send ``n_requests`` uploads of ``files`` (in turn), ``concurrency`` at a time.

    Returns
    -------
    LoadResult
        Request ``i`` sent ``files[i % len(files)]``.
    """
    import httpx

    payloads = [(Path(f).name, Path(f).read_bytes()) for f in files]
    result = LoadResult()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=url, timeout=timeout, limits=limits) as client:
        def one(i: int):
            name, data = payloads[i % len(payloads)]
            start = time.perf_counter()
            response = client.post("/v1/predict", files={"file": (name, data)})
            return i, response.status_code, time.perf_counter() - start, response.json()

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            answers = sorted(pool.map(one, range(n_requests)))
        result.wall_s = time.perf_counter() - start
    for i, status, latency, body in answers:
        result.files.append(Path(files[i % len(files)]))
        result.statuses.append(status)
        result.latencies.append(latency)
        result.bodies.append(body)
    return result


def write_row(row: dict, path: Path = RESULTS) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from results_csv import append_rows

    append_rows(path, [row])


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main(argv=None) -> int:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--workers-threads", type=int, default=2)
    p.add_argument("--model", help="checkpoint or .onnx to serve (default: the shipped model)")
    p.add_argument("--python", default=sys.executable,
                   help="run the server with this interpreter, e.g. a light install's (default: this one)")
    p.add_argument("--no-csv", action="store_true", help="do not append to bench/results/serve_load.csv")
    args = p.parse_args(argv)
    files = [DATA / f for f in LOAD_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print(f"real audio not found: {', '.join(missing)}", file=sys.stderr)
        return 1
    serve_args = ["--workers-threads", args.workers_threads] + (["--model", args.model] if args.model else [])
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(serve_args, Path(tmp) / "uploads", Path(tmp) / "server.log", python=args.python)
        try:
            run_load(server.url, files[:1], 2, 1)  # warm-up: first-call allocations
            result = run_load(server.url, files, args.requests, args.concurrency)
            rss = server.peak_rss_mb()
        finally:
            server.stop()
    s = result.summary()
    print(f"{s['requests']} requests, {args.concurrency} at a time, {args.workers_threads} worker thread(s), "
          f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    print(f"{'requests/s':>10}  {'peak RSS':>10}  {'median':>8}  {'p95':>8}  {'errors':>6}")
    print(f"{s['rps']:>10.2f}  {rss:>6.0f} MiB  {s['median_s']:>6.3f} s  {s['p95_s']:>6.3f} s  {s['errors']:>6}")
    if not args.no_csv:
        write_row({"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _git_commit(), "cpus": os.cpu_count(),
                   "python": "this venv" if args.python == sys.executable else args.python,
                   "model": args.model or "shipped",
                   "workers_threads": args.workers_threads, "concurrency": args.concurrency, **s,
                   "peak_rss_mb": round(rss, 1)})
    return 0 if s["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
