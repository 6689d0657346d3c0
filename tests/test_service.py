"""genrekit serve: the HTTP API over a real uvicorn server on loopback, with real audio.

The servers run as subprocesses (``python -m genrekit serve``, started by
bench/serve_load.py's ``ServerProcess``) with their temporary folder in the test's
tmp_path, so the tests can check that no upload is left behind and measure the
server's peak memory.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

REPO = Path(__file__).resolve().parents[1]
PREDICTION_KEYS = {"path", "genre", "confidence", "probabilities", "votes", "segments", "duration",
                   "processing_seconds"}
ERROR_CODES_4XX = {400, 413, 415, 422}


def _load_bench():
    """bench/serve_load.py (not a package): the server process and the load test live there."""
    name = "genrekit_bench_serve_load"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "serve_load.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


bench = _load_bench()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model():
    from genrekit.prediction import load_model

    return load_model()


@pytest.fixture(scope="module")
def expected(model):
    """The library's own prediction for a file, computed once per file."""
    cache = {}

    def get(path: Path):
        if path not in cache:
            cache[path] = model.predict_file(path)
        return cache[path]

    return get


def _start(tmp_path_factory, name: str, args):
    root = tmp_path_factory.mktemp(name)
    server = bench.ServerProcess(args, root / "uploads", root / "server.log")
    server.client = httpx.Client(base_url=server.url, timeout=120)
    return server


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory):
    """The service with its default limits and 2 worker threads."""
    s = _start(tmp_path_factory, "serve-main", ["--workers-threads", 2])
    yield s
    s.client.close()
    s.stop()


@pytest.fixture(scope="module")
def small_server(shared_data, tmp_path_factory):
    """Tight limits: uploads <= 1 MiB, audio <= 20 s, one worker, one request may wait."""
    s = _start(tmp_path_factory, "serve-small", ["--max-upload-mb", 1, "--max-duration", 20,
                                                 "--workers-threads", 1, "--max-queue", 1])
    yield s
    s.client.close()
    s.stop()


def multipart(parts, boundary: bytes = b"genrekit-test-boundary") -> tuple[bytes, dict]:
    """A multipart/form-data body from ``(field, filename bytes or None, data)`` parts, built by hand
    so that file names can hold anything (NUL bytes, slashes)."""
    body = b""
    for field, filename, data in parts:
        disposition = b'form-data; name="' + field.encode() + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += (b"--" + boundary + b"\r\nContent-Disposition: " + disposition +
                 b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    body += b"--" + boundary + b"--\r\n"
    return body, {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


def post_file(client, name, data: bytes, params=None):
    return client.post("/v1/predict", files={"file": (name, data)}, params=params)


def assert_still_serving(server) -> None:
    """The server answers /health and has no request folder left in its temp dir."""
    assert server.client.get("/health").json()["status"] == "ok"
    left = list(server.tmp_dir.iterdir())
    assert left == [], f"temporary files left behind: {left}"


def assert_error(response, status: int, error: str | set) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] in ({error} if isinstance(error, str) else error), body
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10, body
    assert "/tmp" not in body["detail"] and "genrekit-serve-" not in body["detail"], body
    return body


def assert_same_prediction(body: dict, want, name: str, tol: float = 1e-4) -> None:
    """The API's JSON matches the library's Prediction for the same file."""
    assert body["path"] == name
    assert body["genre"] == want.genre
    assert list(body["probabilities"]) == list(want.probabilities)
    assert body["probabilities"] == pytest.approx(want.probabilities, abs=tol)
    assert body["votes"] == want.votes()
    assert [s["genre"] for s in body["segments"]] == [s["genre"] for s in want.segments]
    assert body["duration"] == pytest.approx(want.duration, abs=1e-3)


# ------------------------------------------------------------- predictions


@pytest.mark.parametrize("which", ["fma_mp3", "gtzan_wav"])
def test_predict_real_audio_matches_library(server, expected, which, request):
    path = request.getfixturevalue(which)
    response = post_file(server.client, path.name, path.read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PREDICTION_KEYS
    assert_same_prediction(body, expected(path), path.name)
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert all(set(s) == {"start", "end", "genre", "confidence"} for s in body["segments"])
    assert sum(body["votes"].values()) == len(body["segments"]) == 10
    assert 0 < body["processing_seconds"] < 60
    assert_still_serving(server)


def test_predict_json_is_the_cli_json(server, fma_mp3):
    """``?top_k=3`` gives exactly what ``genrekit predict --format json`` prints (default --top-k 3)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "genrekit", "predict", "--format", "json", "--quiet", str(fma_mp3)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (cli,) = json.loads(run.stdout)
    api = server.client.post("/v1/predict", params={"top_k": 3},
                             files={"file": (fma_mp3.name, fma_mp3.read_bytes())}).json()
    assert api.pop("processing_seconds") > 0
    assert cli.pop("path") == str(fma_mp3) and api.pop("path") == fma_mp3.name
    assert set(api) == set(cli)
    assert list(api["probabilities"]) == list(cli["probabilities"])
    assert api["probabilities"] == pytest.approx(cli["probabilities"], abs=1e-4)
    assert len(api["segments"]) == len(cli["segments"])
    for a, c in zip(api["segments"], cli["segments"], strict=True):
        assert (a["start"], a["end"], a["genre"]) == (c["start"], c["end"], c["genre"])
        assert a["confidence"] == pytest.approx(c["confidence"], abs=1e-3)
    assert (api["genre"], api["votes"], api["duration"]) == (cli["genre"], cli["votes"], cli["duration"])


def test_predict_with_spectrogram(server, fma_mp3, model):
    import base64

    response = server.client.post("/v1/predict", params={"spectrogram": 1},
                                  files={"file": (fma_mp3.name, fma_mp3.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    spec = body["spectrogram"]
    n_mels, columns = spec["shape"]
    assert n_mels == model.feature_config.n_mels
    assert spec["n_segments"] == len(body["segments"])
    assert columns == spec["n_segments"] * spec["columns_per_segment"]
    levels = np.frombuffer(base64.b64decode(spec["data"]), np.uint8)
    assert levels.size == n_mels * columns
    assert levels.min() == 0 and levels.max() == 255 and 20 < levels.mean() < 235
    assert spec["vmin"] < spec["vmax"] and spec["unit"] == model.feature_config.value_unit
    assert [t["band"] for t in spec["freq_ticks"]] == sorted(t["band"] for t in spec["freq_ticks"])
    # the spectrogram changes nothing else
    plain = post_file(server.client, fma_mp3.name, fma_mp3.read_bytes()).json()
    assert {k: v for k, v in body.items() if k not in ("spectrogram", "processing_seconds")} == \
        {k: v for k, v in plain.items() if k != "processing_seconds"}


# ------------------------------------------------------------ other routes


def test_model_card(server, model):
    card = server.client.get("/v1/model").json()
    assert card["labels"] == model.labels
    assert card["feature_config"] == model.feature_config.to_dict()
    assert card["model_config"]["backbone"] == model.card["model_config"]["backbone"]
    assert card["training_data"] and "metrics" in card
    assert card["model_id"] == model.model_id
    assert "/" not in card["source"]
    assert card["limits"] == {"max_upload_mb": 50.0, "max_duration_s": 600.0, "concurrency": 2, "max_queue": 32}


def test_health(server):
    body = server.client.get("/health").json()
    assert body["status"] == "ok" and body["model_id"]
    assert body["running"] >= 0 and body["waiting"] >= 0


def test_openapi_and_docs(server):
    spec = server.client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/health"} <= set(spec["paths"])
    upload = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["file"]["format"] == "binary"
    assert {"413", "415", "422"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])
    docs = server.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_page_and_static_files_need_no_network(server):
    page = server.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ["/static/app.js", "/static/style.css"]:
        assert asset in page.text
        response = server.client.get(asset)
        assert response.status_code == 200 and len(response.text) > 500
    static = REPO / "genrekit" / "service" / "static"
    for f in static.iterdir():
        text = f.read_text()
        for line in text.splitlines():  # no external script, style, font, image or fetch
            if "http://" in line or "https://" in line or "//cdn" in line:
                assert "www.w3.org/2000/svg" in line, f"{f.name}: {line.strip()}"


def test_unknown_route_is_a_json_404(server):
    response = server.client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


# --------------------------------------------------------------- bad input


def _random_bytes(n: int) -> bytes:
    return np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()


def _silent_wav(seconds: float = 5.0) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * 22050), np.float32), 22050, format="WAV", subtype="PCM_16")
    return buf.getvalue()


BAD_UPLOADS = {
    # id: (file name, content maker(mp3 bytes), status, error code(s), text in detail)
    "empty-file": ("empty.mp3", lambda mp3: b"", 422, "empty_file", "empty"),
    "text-not-audio": ("notes.txt", lambda mp3: b"just some text\n" * 500, 415, "not_audio", "not an audio file"),
    "random-bytes-named-mp3": ("noise.mp3", lambda mp3: _random_bytes(200_000), 415, "not_audio", "noise.mp3"),
    "truncated-mp3": ("cut.mp3", lambda mp3: mp3[:4000], 422, {"audio_too_short", "corrupt_audio"}, "cut.mp3"),
    "half-mp3": ("half.mp3", lambda mp3: mp3[: len(mp3) // 2], 422, "corrupt_audio", "truncated"),
    "header-only-mp3": ("head.mp3", lambda mp3: mp3[:400], 422, {"audio_too_short", "corrupt_audio", "empty_audio"},
                        "head.mp3"),
    "silent-wav": ("quiet.wav", lambda mp3: _silent_wav(), 422, "silent_audio", "silent"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_audio_is_a_clear_4xx(server, fma_mp3, case):
    name, make, status, error, text = BAD_UPLOADS[case]
    body = assert_error(post_file(server.client, name, make(fma_mp3.read_bytes())), status, error)
    assert text in body["detail"]
    assert_still_serving(server)


def test_missing_file_field(server, fma_mp3):
    body, headers = multipart([("audio", b"song.mp3", fma_mp3.read_bytes()), ("note", None, b"hello")])
    detail = assert_error(server.client.post("/v1/predict", content=body, headers=headers), 422, "missing_file")
    assert "'file'" in detail["detail"]
    assert_error(server.client.post("/v1/predict"), 422, "missing_file")
    assert_error(server.client.post("/v1/predict", json={"file": "song.mp3"}), 422, "missing_file")
    assert_still_serving(server)


def test_malformed_multipart(server, fma_mp3):
    body, headers = multipart([("file", b"song.mp3", fma_mp3.read_bytes()[:50_000])])
    cut = body[: len(body) - 40]  # the closing boundary is missing
    assert_error(server.client.post("/v1/predict", content=cut, headers=headers), 400, "bad_multipart")
    assert_still_serving(server)


def test_bad_query_parameter(server, fma_mp3):
    response = server.client.post("/v1/predict", params={"top_k": 0},
                                  files={"file": ("a.mp3", fma_mp3.read_bytes())})
    assert "top_k" in assert_error(response, 422, "invalid_request")["detail"]
    assert_still_serving(server)


PATH_TRICKS = {
    "dot-dot": (b"../../etc/passwd.mp3", "passwd.mp3"),
    "absolute": (b"/etc/passwd.mp3", "passwd.mp3"),
    "windows": (b"..\\..\\Windows\\win.mp3", "win.mp3"),
    "nul-byte": (b"evil\x00.mp3", "evil.mp3"),
    "only-dots": (b"..", "upload"),
    "empty-name": (b"", "upload"),
}


@pytest.mark.parametrize("case", list(PATH_TRICKS))
def test_file_name_path_tricks(server, fma_mp3, expected, case):
    raw, shown = PATH_TRICKS[case]
    body, headers = multipart([("file", raw, fma_mp3.read_bytes())])
    response = server.client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert_same_prediction(response.json(), expected(fma_mp3), shown)
    # and in an error message
    body, headers = multipart([("file", raw, b"not audio at all " * 100)])
    detail = assert_error(server.client.post("/v1/predict", content=body, headers=headers), 415, "not_audio")
    assert detail["detail"].startswith(f"{shown}:") and "etc" not in detail["detail"]
    assert not (REPO.parent / "etc").exists()
    assert_still_serving(server)


# ------------------------------------------------------------------- limits


def test_upload_over_the_size_limit(small_server, gtzan_wav):
    data = gtzan_wav.read_bytes()
    assert len(data) > 2**20  # a real 30 s WAV: 1.3 MB
    response = post_file(small_server.client, gtzan_wav.name, data)
    body = assert_error(response, 413, "upload_too_large")
    assert "1 MB" in body["detail"]
    # the same without a Content-Length: the limit holds while streaming
    chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))
    body_bytes, headers = multipart([("file", b"big.wav", b"")])
    head, tail = body_bytes.split(b"\r\n\r\n", 1)
    stream = iter([head + b"\r\n\r\n", *chunks, tail])
    assert_error(small_server.client.post("/v1/predict", content=stream, headers=headers), 413, "upload_too_large")
    assert_still_serving(small_server)


def _raw_request(url: str, head: bytes, body_chunks, read_timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``head`` and ``body_chunks`` over a socket, then read the answer without sending the rest."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        start = time.monotonic()
        answer = sock.recv(65536)
        return answer, time.monotonic() - start


def test_upload_limit_stops_reading_early(small_server):
    """413 arrives while the client still has most of a (claimed) 100 MB upload to send."""
    boundary = b"B0UNDARY"
    part = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="big.mp3"\r\n\r\n'
    base = (b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=" +
            boundary + b"\r\n")
    # declared length over the limit: refused before any body is read
    answer, waited = _raw_request(small_server.url, base + b"Content-Length: 100000000\r\n\r\n", [part])
    assert answer.startswith(b"HTTP/1.1 413") and waited < 5
    # chunked, no length: refused once 1 MiB has streamed past, not at the end
    def chunk(data):
        return b"%x\r\n" % len(data) + data + b"\r\n"

    body = [chunk(part)] + [chunk(b"\0" * 65536) for _ in range(24)]  # 1.5 MiB of a "100 MB" stream
    answer, waited = _raw_request(small_server.url, base + b"Transfer-Encoding: chunked\r\n\r\n", body)
    assert answer.startswith(b"HTTP/1.1 413")
    assert waited < 5
    assert_still_serving(small_server)


def test_audio_over_the_duration_limit(small_server, fma_mp3):
    data = fma_mp3.read_bytes()
    assert len(data) < 2**20  # fits the upload limit; 30 s of audio does not fit 20 s
    body = assert_error(post_file(small_server.client, fma_mp3.name, data), 413, "audio_too_long")
    assert "20 s" in body["detail"] and body["detail"].startswith(fma_mp3.name)
    assert_still_serving(small_server)


def test_duration_capped_while_decoding_when_header_does_not_say(model, fma_mp3, monkeypatch):
    """A file whose header gives no duration is refused after decoding just past the limit."""
    from genrekit.audio import AudioInfo
    from genrekit.errors import TooLongError
    from genrekit.service import inference

    monkeypatch.setattr(inference, "audio_info", lambda p: AudioInfo(str(p), 44100, 2, None))
    caps = []
    real = model.predict_file

    def spy(path, max_duration=None):
        caps.append(max_duration)
        return real(path, max_duration)

    monkeypatch.setattr(model, "predict_file", spy)
    with pytest.raises(TooLongError, match="more than 10 s"):
        inference.predict_upload(model, fma_mp3, "x.mp3", max_duration_s=10)
    assert caps and caps[0] <= 12
    result = inference.predict_upload(model, fma_mp3, "x.mp3", max_duration_s=40)
    assert result["genre"] == real(fma_mp3).genre


def test_busy_server_answers_503(small_server, tmp_path):
    import io

    import soundfile as sf

    buf = io.BytesIO()  # 18 s of noise: within both limits, takes the one worker a while
    sf.write(buf, np.random.default_rng(1).uniform(-0.3, 0.3, 18 * 22050).astype(np.float32), 22050,
             format="WAV", subtype="PCM_16")
    data = buf.getvalue()

    def one(i):
        with httpx.Client(base_url=small_server.url, timeout=120) as c:
            return post_file(c, f"noise{i}.wav", data)

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert_error(busy, 503, "busy")
    assert busy.headers["retry-after"]
    assert_still_serving(small_server)


# --------------------------------------------------------------- load test


def test_load_50_requests_8_at_a_time(server, shared_data, expected, record_property):
    files = [shared_data / f for f in bench.LOAD_FILES]
    want = {f: expected(f) for f in files}
    result = bench.run_load(server.url, files, n_requests=50, concurrency=8)
    rss = server.peak_rss_mb()
    s = result.summary()
    print(f"\nload test: {s['requests']} requests, 8 at a time, 2 worker threads, {os.cpu_count()} CPU(s): "
          f"median {s['median_s']:.3f} s, p95 {s['p95_s']:.3f} s, {s['rps']:.2f} requests/s, "
          f"wall {s['wall_s']:.1f} s, server peak RSS {rss:.0f} MiB")
    for key, value in {**s, "peak_rss_mb": round(rss, 1)}.items():
        record_property(key, value)
    assert result.statuses == [200] * 50, result.statuses
    for f, body in zip(result.files, result.bodies, strict=True):  # every answer belongs to the file that was sent
        assert_same_prediction(body, want[f], f.name)
    assert rss < 2048, f"server peak RSS {rss:.0f} MiB"
    assert s["wall_s"] < 120
    assert_still_serving(server)


# ------------------------------------------------------------ units and CLI


@pytest.mark.parametrize("raw, clean", [
    ("song.mp3", "song.mp3"), ("../../etc/passwd.mp3", "passwd.mp3"), ("/abs/path/a.wav", "a.wav"),
    ("C:\\Users\\me\\b.flac", "b.flac"), ("evil\x00name.mp3", "evilname.mp3"), ("line\nbreak.mp3", "linebreak.mp3"),
    ("..", "upload"), ("", "upload"), (None, "upload"), (".hidden.mp3", "hidden.mp3"),
    ("  spaced .mp3 ", "spaced .mp3"),
])
def test_sanitize_filename(raw, clean):
    from genrekit.service.upload import sanitize_filename

    assert sanitize_filename(raw) == clean


def test_sanitize_filename_shortens_keeping_extension():
    from genrekit.service.upload import MAX_NAME_CHARS, sanitize_filename, storage_name

    name = sanitize_filename("x" * 500 + ".mp3")
    assert len(name) <= MAX_NAME_CHARS and name.endswith(".mp3")
    assert storage_name("../a.MP3") == "upload.mp3" and storage_name("a.exe") == "upload"


def test_create_app_checks_limits(model):
    from genrekit.service import create_app

    with pytest.raises(ValueError, match="max_upload_mb"):
        create_app(model, max_upload_mb=0)
    with pytest.raises(ValueError, match="concurrency"):
        create_app(model, concurrency=-1)


def test_cli_help_imports_nothing_heavy():
    code = ("import sys; from genrekit.cli import build_parser; p = build_parser(); "
            "p.parse_args(['serve', '--port', '9000']); "
            "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    helptext = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--help"], cwd=REPO, capture_output=True,
                              text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120).stdout
    for option in ["--model", "--host", "--port", "--max-upload-mb", "--max-duration", "--workers-threads"]:
        assert option in helptext


def test_cli_reports_a_missing_model(tmp_path):
    run = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--model", str(tmp_path / "nope.pt"),
                          "--port", "0"], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert run.returncode == 1 and "model not found" in run.stderr


def test_long_real_audio_with_spectrogram(server, shared_data, tmp_path):
    """Five minutes of real music (ten GTZAN clips end to end): 100 segments, a narrower spectrogram."""
    import soundfile as sf

    clips = sorted((shared_data / "gtzan").glob("*/*.wav"))[:10]
    y = np.concatenate([sf.read(c, dtype="float32")[0] for c in clips])
    path = tmp_path / "medley.wav"
    sf.write(path, y, 22050, subtype="PCM_16")
    response = server.client.post("/v1/predict", params={"spectrogram": 1},
                                  files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duration"] == pytest.approx(len(y) / 22050, abs=0.01)
    assert len(body["segments"]) == body["spectrogram"]["n_segments"] == 100
    spec = body["spectrogram"]
    assert spec["columns_per_segment"] < 129 and spec["shape"][1] <= 2400
    assert_still_serving(server)
