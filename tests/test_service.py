"""genrekit serve: the API contract, the limits a hostile or careless client meets, and the light install.

Most tests run the application in-process with synthetic audio: FastAPI's TestClient
for the contract, and httpx's ASGI transport (which streams request bodies chunk by
chunk) for uploads that stall, overlap or outlast their limits. A few start a real
``genrekit serve`` (bench/serve_load.py's ``ServerProcess``) for what only a real server
shows: sockets and file descriptors held by stalled clients, signals, leftover
temporary folders and memory. Only the tests named ``*_real_audio*`` need /work/shared.
"""
from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx")
anyio = pytest.importorskip("anyio")
from fastapi.testclient import TestClient  # noqa: E402

from genrekit.errors import ConfigError  # noqa: E402
from genrekit.prediction import Prediction  # noqa: E402
from genrekit.service import create_app  # noqa: E402
from genrekit.service.limits import ServiceLimits  # noqa: E402
from genrekit.service.tempfiles import NAME, clean_stale, owner_tag, process_start  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PREDICTION_KEYS = {"path", "genre", "abstain", "confidence", "probabilities", "votes", "segments", "duration",
                   "processing_seconds"}
BOUNDARY = b"genrekit-test-boundary"
HEAVY = ("torch", "scipy", "sklearn")


def _load_bench():
    """bench/serve_load.py (not a package): the server process and the load test live there."""
    name = "genrekit_bench_serve_load"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "serve_load.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


bench = _load_bench()


# ------------------------------------------------------------ synthetic audio


def audio_bytes(seconds: float, sr: int = 22050, channels: int = 1, fmt: str = "WAV", kind: str = "noise",
                seed: int = 0, subtype: str = "PCM_16") -> bytes:
    """An encoded file of ``seconds`` of noise, music (a synthetic rock stand-in), a constant level,
    silence, NaN or cancelling stereo. The shipped model answers "not music" for the noise."""
    n = int(seconds * sr)
    if kind == "noise":
        y = 0.2 * np.random.default_rng(seed).standard_normal((n, channels))
    elif kind == "music":
        from tests.conftest import synthetic_track

        y = np.repeat(synthetic_track("rock", seed + 1, seconds, sr)[:n, None], channels, axis=1)
    elif kind == "constant":
        y = np.full((n, channels), 1e-3)
    elif kind == "nan":
        y = np.full((n, channels), np.nan)
    elif kind == "cancelling":  # L = -R: silent as mono (exactly so as FLOAT; PCM_16 rounds unevenly)
        y = 0.2 * np.random.default_rng(seed).standard_normal(n)[:, None] * np.array([1.0, -1.0])
    else:
        y = np.zeros((n, channels))
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def multipart(parts, boundary: bytes = BOUNDARY) -> tuple[bytes, dict]:
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


def split_body(data: bytes, name: bytes = b"song.wav") -> tuple[bytes, bytes]:
    """The multipart body of one file, cut into (everything up to the file's bytes, the closing boundary)."""
    body, _ = multipart([("file", name, b"")])
    head, tail = body.split(b"\r\n\r\n", 1)
    return head + b"\r\n\r\n", data + tail


MULTIPART_HEADERS = {"Content-Type": "multipart/form-data; boundary=" + BOUNDARY.decode()}


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model():
    """The shipped model without its not-music detector: these tests upload noise to test the plumbing
    (the detector itself is tested in tests/test_abstention.py)."""
    from genrekit.prediction import load_model

    classifier = load_model()
    classifier.detector = None
    return classifier


@pytest.fixture
def uploads(tmp_path) -> Path:
    """The service's temporary root for this test."""
    return tmp_path / "uploads"


@pytest.fixture
def make_app(model, uploads):
    def make(classifier=None, **limits):
        return create_app(classifier or model, ServiceLimits(**limits), tmp_dir=uploads)

    return make


@pytest.fixture
def client(make_app):
    with TestClient(make_app()) as c:
        yield c


def request_folders(root: Path) -> list[Path]:
    return sorted(root.iterdir()) if root.exists() else []


def assert_error(response, status: int, error: str | set) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] in ({error} if isinstance(error, str) else error), body
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10, body
    assert "/tmp" not in body["detail"] and "genrekit-serve-" not in body["detail"], body
    return body


def assert_same_prediction(body: dict, want, name: str, tol: float = 1e-4) -> None:
    """The API's JSON matches the library's Prediction for the same file."""
    assert body["path"] == name
    assert (body["genre"], body["abstain"]) == (want.genre, want.abstain)
    assert list(body["probabilities"]) == list(want.probabilities)
    assert body["probabilities"] == pytest.approx(want.probabilities, abs=tol)
    assert body["votes"] == want.votes()
    assert [s["genre"] for s in body["segments"]] == [s["genre"] for s in want.segments]
    assert body["duration"] == pytest.approx(want.duration, abs=1e-3)


class FakeModel:
    """Duck-typed GenreClassifier: a fixed answer, optionally held until ``release`` is set."""

    def __init__(self, real, abstain=None, music_probability=None, hold: threading.Event | None = None):
        self.feature_config, self.labels, self.model_id = real.feature_config, ["jazz", "rock"], "fake@0"
        self.card = {"model_id": self.model_id, "labels": self.labels, "source": "/secret/fake.onnx"}
        self.abstention = {"min_confidence": 0.5, "detects_not_music": True, "not_music_threshold": 0.5}
        self.abstain, self.music_probability, self.hold = abstain, music_probability, hold
        self.started = threading.Event()

    def predict_file(self, path, max_duration=None, on_batch=None):
        self.started.set()
        if self.hold is not None:
            assert self.hold.wait(30), "the test never released the fake model"
        duration = sf.info(str(path)).duration
        return Prediction(str(path), None if self.abstain else "jazz", {"jazz": 0.59, "rock": 0.41},
                          [{"start": 0.0, "end": 3.0, "genre": "jazz", "confidence": 0.59}], duration,
                          abstain=self.abstain, music_probability=self.music_probability)


# ------------------------------------------------------------- the contract


def test_predict_contract(client, model, tmp_path):
    data = audio_bytes(8.0)
    response = client.post("/v1/predict", files={"file": ("noise.wav", data)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == PREDICTION_KEYS
    assert body["genre"] in model.labels and body["abstain"] is None
    assert list(body["probabilities"]) == sorted(body["probabilities"], key=lambda g: -body["probabilities"][g])
    assert set(body["probabilities"]) == set(model.labels)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
    assert all(set(s) == {"start", "end", "genre", "confidence"} for s in body["segments"])
    assert sum(body["votes"].values()) == len(body["segments"]) > 0
    assert 0 < body["processing_seconds"] < 60
    (tmp_path / "noise.wav").write_bytes(data)
    assert_same_prediction(body, model.predict_file(tmp_path / "noise.wav"), "noise.wav")


def test_top_k_and_spectrogram(client, model):
    import base64

    data = audio_bytes(10.0, seed=3)
    plain = client.post("/v1/predict", files={"file": ("a.wav", data)}).json()
    top = client.post("/v1/predict", params={"top_k": 3}, files={"file": ("a.wav", data)}).json()
    assert list(top["probabilities"]) == list(plain["probabilities"])[:3]
    body = client.post("/v1/predict", params={"spectrogram": 1}, files={"file": ("a.wav", data)}).json()
    spec = body.pop("spectrogram")
    rows, columns = spec["shape"]
    assert rows == model.feature_config.segment_shape[0]
    assert spec["n_segments"] == len(body["segments"])
    assert columns == spec["n_segments"] * spec["columns_per_segment"]
    levels = np.frombuffer(base64.b64decode(spec["data"]), np.uint8)
    assert levels.size == rows * columns and levels.min() == 0 and levels.max() == 255
    assert spec["vmin"] < spec["vmax"] and spec["unit"] == model.feature_config.value_unit
    assert [t["band"] for t in spec["freq_ticks"]] == sorted(t["band"] for t in spec["freq_ticks"])
    # the spectrogram changes nothing else
    body.pop("processing_seconds"), plain.pop("processing_seconds")
    assert body == plain


def test_abstains_uncertain_in_the_contract(make_app, model):
    """Below min_confidence: genre null, abstain "uncertain", the probabilities kept; /v1/model says the threshold."""
    cautious = copy.copy(model)
    cautious.min_confidence = 0.999
    with TestClient(make_app(cautious)) as c:
        body = c.post("/v1/predict", files={"file": ("noise.wav", audio_bytes(6.0))}).json()
        assert body["genre"] is None and body["abstain"] == "uncertain"
        assert set(body["probabilities"]) == set(model.labels)
        assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
        assert body["confidence"] < 0.999
        assert c.get("/v1/model").json()["abstention"]["min_confidence"] == 0.999


def test_min_confidence_when_the_app_loads_the_model(uploads):
    from genrekit.prediction import DEFAULT_MODEL

    app = create_app(DEFAULT_MODEL, runtime="onnx", min_confidence=0.999, tmp_dir=uploads, threads=1)
    with TestClient(app) as c:
        assert c.get("/v1/model").json()["abstention"]["min_confidence"] == 0.999
        music = audio_bytes(4.0, kind="music")
        assert c.post("/v1/predict", files={"file": ("rock.wav", music)}).json()["abstain"] == "uncertain"


@pytest.mark.parametrize("threshold", [1.0, 0.0])
def test_model_card_shows_the_min_confidence_in_force_once(uploads, threshold):
    """``serve --min-confidence`` overrides the model's own: /v1/model gives that value at the top and in abstention."""
    from genrekit.prediction import DEFAULT_MODEL

    app = create_app(DEFAULT_MODEL, runtime="onnx", min_confidence=threshold, tmp_dir=uploads, threads=1)
    with TestClient(app) as c:
        card = c.get("/v1/model").json()
    assert card["abstention"]["min_confidence"] == threshold
    assert card.get("min_confidence", threshold) == threshold


def test_abstains_not_music_in_the_contract(make_app, model):
    with TestClient(make_app(FakeModel(model, abstain="not_music", music_probability=0.03))) as c:
        body = c.post("/v1/predict", files={"file": ("speech.wav", audio_bytes(4.0))}).json()
        assert (body["genre"], body["abstain"], body["music_probability"]) == (None, "not_music", 0.03)
        assert body["probabilities"] and body["path"] == "speech.wav"
        card = c.get("/v1/model").json()
        assert card["abstention"]["detects_not_music"] is True and card["source"] == "fake.onnx"


def test_model_card_and_health(client, model):
    card = client.get("/v1/model").json()
    assert card["labels"] == model.labels and card["model_id"] == model.model_id
    assert card["feature_config"] == model.feature_config.to_dict()
    assert "/" not in card["source"]
    assert card["abstention"] == json.loads(json.dumps(model.abstention))
    assert card["limits"] == ServiceLimits().to_dict()
    health = client.get("/health").json()
    assert health == {"status": "ok", "model_id": model.model_id, "running": 0, "waiting": 0, "uploading": 0,
                      "temp_mb": 0.0}


@pytest.mark.parametrize("path", ["/", "/health", "/v1/model", "/static/app.js", "/openapi.json"])
def test_head_answers_like_get(client, path):
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.content == b""


def test_head_on_post_route_is_405(client):
    response = client.head("/v1/predict")
    assert response.status_code == 405 and response.headers["content-type"] == "application/json"
    assert response.headers["allow"] == "POST" and response.content == b""


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/health"} <= set(spec["paths"])
    upload = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["file"]["format"] == "binary"
    assert {"408", "413", "415", "422", "503"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])
    assert "swagger" in client.get("/docs").text.lower()


def test_page_and_static_files_need_no_network(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ["/static/app.js", "/static/style.css"]:
        assert asset in page.text
        response = client.get(asset)
        assert response.status_code == 200 and len(response.text) > 500
    for f in (REPO / "genrekit" / "service" / "static").iterdir():
        for line in f.read_text().splitlines():  # no external script, style, font, image or fetch
            if "http://" in line or "https://" in line or "//cdn" in line:
                assert "www.w3.org/2000/svg" in line, f"{f.name}: {line.strip()}"


def test_unknown_route_is_a_json_404(client):
    assert client.get("/v1/nope").json() == {"error": "not_found", "detail": "Not Found"}


# ---------------------------------------------------------------- bad input


def _mp3(seconds: float = 6.0) -> bytes:
    return audio_bytes(seconds, fmt="MP3", subtype="MPEG_LAYER_III")


BAD_UPLOADS = {
    # id: (file name, content maker, status, error code(s), text in detail)
    "empty-file": ("empty.mp3", lambda: b"", 422, "empty_file", "empty"),
    "text-not-audio": ("notes.txt", lambda: b"just some text\n" * 500, 415, "not_audio", "not an audio file"),
    "random-bytes-named-mp3": ("noise.mp3", lambda: np.random.default_rng(0).bytes(200_000), 415, "not_audio",
                               "noise.mp3"),
    "half-mp3": ("half.mp3", lambda: _mp3()[: len(_mp3()) // 2], 422, "corrupt_audio", "half.mp3"),
    "truncated-wav": ("cut.wav", lambda: audio_bytes(6.0)[:60_000], 422, "corrupt_audio", "cut.wav"),
    "cancelling-stereo": ("phase.wav", lambda: audio_bytes(5.0, kind="cancelling", subtype="FLOAT"), 422, "silent_audio",
                          "channels cancel out"),
    "too-short": ("blip.wav", lambda: audio_bytes(0.3), 422, "audio_too_short", "blip.wav"),
    "nan-float-wav": ("nan.wav", lambda: audio_bytes(3.0, kind="nan", subtype="FLOAT"), 422, "non_finite_audio",
                      "nan.wav"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_audio_is_a_clear_4xx(client, uploads, case):
    name, make, status, error, text = BAD_UPLOADS[case]
    body = assert_error(client.post("/v1/predict", files={"file": (name, make())}), status, error)
    assert text in body["detail"]
    assert request_folders(uploads) == []


def test_missing_file_field(client, uploads):
    body, headers = multipart([("audio", b"song.wav", audio_bytes(2.0)), ("note", None, b"hello")])
    assert "'file'" in assert_error(client.post("/v1/predict", content=body, headers=headers), 422,
                                    "missing_file")["detail"]
    assert_error(client.post("/v1/predict"), 422, "missing_file")
    assert_error(client.post("/v1/predict", json={"file": "song.mp3"}), 422, "missing_file")
    assert request_folders(uploads) == []


def test_malformed_multipart(client, uploads):
    body, headers = multipart([("file", b"song.wav", audio_bytes(2.0))])
    assert_error(client.post("/v1/predict", content=body[:-40], headers=headers), 400, "bad_multipart")
    assert request_folders(uploads) == []


def test_bad_query_parameter(client):
    response = client.post("/v1/predict", params={"top_k": 0}, files={"file": ("a.wav", audio_bytes(2.0))})
    assert "top_k" in assert_error(response, 422, "invalid_request")["detail"]


PATH_TRICKS = {
    "dot-dot": (b"../../etc/passwd.wav", "passwd.wav"),
    "absolute": (b"/etc/passwd.wav", "passwd.wav"),
    "windows": (b"..\\..\\Windows\\win.wav", "win.wav"),
    "nul-byte": (b"evil\x00.wav", "evil.wav"),
    "only-dots": (b"..", "upload"),
}


@pytest.mark.parametrize("case", list(PATH_TRICKS))
def test_file_name_path_tricks(client, uploads, case):
    raw, shown = PATH_TRICKS[case]
    body, headers = multipart([("file", raw, audio_bytes(4.0))])
    response = client.post("/v1/predict", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["path"] == shown, response.text
    body, headers = multipart([("file", raw, b"not audio at all " * 100)])
    detail = assert_error(client.post("/v1/predict", content=body, headers=headers), 415, "not_audio")["detail"]
    assert detail.startswith(f"{shown}:") and "etc" not in detail
    assert request_folders(uploads) == []


# ------------------------------------------------------------ size and length


def test_upload_over_the_size_limit(make_app, uploads):
    data = audio_bytes(30.0)  # 1.3 MB
    with TestClient(make_app(max_upload_mb=1)) as c:
        body = assert_error(c.post("/v1/predict", files={"file": ("big.wav", data)}), 413, "upload_too_large")
        assert "1 MB" in body["detail"]
        head, rest = split_body(data, b"big.wav")  # no Content-Length: the limit holds while streaming
        chunks = iter([head] + [rest[i:i + 65536] for i in range(0, len(rest), 65536)])
        response = c.post("/v1/predict", content=chunks, headers=MULTIPART_HEADERS)
        assert_error(response, 413, "upload_too_large")
        assert response.headers["connection"] == "close"
    assert request_folders(uploads) == []


def test_audio_over_the_duration_limit(make_app):
    with TestClient(make_app(max_duration_s=5)) as c:
        body = assert_error(c.post("/v1/predict", files={"file": ("long.wav", audio_bytes(8.0))}), 413,
                            "audio_too_long")
        assert "5 s" in body["detail"] and body["detail"].startswith("long.wav")


def test_duration_capped_while_decoding_when_header_does_not_say(model, tmp_path, monkeypatch):
    """A file whose header gives no duration is refused after decoding just past the limit."""
    from genrekit.audio import AudioInfo
    from genrekit.errors import TooLongError
    from genrekit.service import inference

    path = tmp_path / "long.wav"
    path.write_bytes(audio_bytes(20.0))
    monkeypatch.setattr(inference, "audio_info", lambda p: AudioInfo(str(p), 22050, 1, None))
    caps, real = [], model.predict_file

    def spy(path, max_duration=None, on_batch=None):
        caps.append(max_duration)
        return real(path, max_duration, on_batch)

    monkeypatch.setattr(model, "predict_file", spy)
    with pytest.raises(TooLongError, match="more than 10 s"):
        inference.predict_upload(model, path, "x.wav", max_duration_s=10)
    assert caps and caps[0] <= 12
    assert inference.predict_upload(model, path, "x.wav", max_duration_s=30)["genre"] == real(path).genre


def test_limits_are_checked():
    with pytest.raises(ConfigError, match="max_temp_mb"):
        ServiceLimits(max_upload_mb=100, max_temp_mb=50)
    for bad in [{"max_upload_mb": 0}, {"concurrency": -1}, {"max_queue": 0}, {"max_uploads": 2.5},
                {"upload_idle_s": 0}]:
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ServiceLimits(**bad)


# -------------------------------------- uploads in flight, queue, disk, timeouts


class Stalled:
    """An upload body that sends ``first`` bytes of a file, then waits for ``release`` to send the rest."""

    def __init__(self, data: bytes, first: int):
        self.head, rest = split_body(data)
        self.first, self.rest = rest[:first], rest[first:]
        self.release = anyio.Event()

    async def __aiter__(self):
        yield self.head + self.first
        await self.release.wait()
        yield self.rest


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def run_async(app, scenario) -> dict:
    """Run ``scenario(client, gate, results)`` against ``app`` in one event loop; the results dict."""
    async def main():
        results = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
            await scenario(client, app.state.settings.gate, results)
        return results

    return anyio.run(main)


async def _post(client, results, key, body, headers=None):
    results[key] = await client.post("/v1/predict", content=body, headers={**MULTIPART_HEADERS, **(headers or {})})


def test_uploads_in_flight_are_limited(make_app, uploads):
    """max_uploads stalled uploads hold a folder each; one more gets 503 at once; all are released."""
    app = make_app(max_uploads=3, max_queue=10)
    data = audio_bytes(4.0)
    stalls = [Stalled(data, 1000) for _ in range(3)]

    async def scenario(client, gate, results):
        async with anyio.create_task_group() as tg:
            for i, stall in enumerate(stalls):
                tg.start_soon(_post, client, results, i, stall)
            await _wait_for(lambda: gate.uploading == 3)
            results["folders"] = request_folders(uploads)
            results["health"] = (await client.get("/health")).json()
            await _post(client, results, "extra", audio_bytes(2.0))
            for stall in stalls:
                stall.release.set()

    results = run_async(app, scenario)
    assert len(results["folders"]) == 3 and all(NAME.match(f.name) for f in results["folders"])
    assert results["health"]["uploading"] == 3
    extra = assert_error(results["extra"], 503, "too_many_uploads")
    assert results["extra"].headers["retry-after"] and results["extra"].headers["connection"] == "close"
    assert "limit 3" in extra["detail"]
    assert [results[i].status_code for i in range(3)] == [200, 200, 200]
    assert request_folders(uploads) == []


def test_queue_counts_uploads_in_flight(make_app):
    app = make_app(max_uploads=10, max_queue=2)
    stalls = [Stalled(audio_bytes(3.0), 500) for _ in range(2)]

    async def scenario(client, gate, results):
        async with anyio.create_task_group() as tg:
            for i, stall in enumerate(stalls):
                tg.start_soon(_post, client, results, i, stall)
            await _wait_for(lambda: gate.uploading == 2)
            await _post(client, results, "extra", audio_bytes(2.0))
            for stall in stalls:
                stall.release.set()

    results = run_async(app, scenario)
    assert "limit 2" in assert_error(results["extra"], 503, "busy")["detail"]
    assert results[0].status_code == results[1].status_code == 200


def test_workers_busy_answers_503(make_app, model):
    """One worker, held; one request may wait; the third is refused."""
    hold = threading.Event()
    fake = FakeModel(model, hold=hold)
    app = make_app(fake, concurrency=1, max_queue=1)

    async def scenario(client, gate, results):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_post, client, results, "running", b"".join(split_body(audio_bytes(2.0))))
            await _wait_for(fake.started.is_set)
            tg.start_soon(_post, client, results, "waiting", b"".join(split_body(audio_bytes(2.0))))
            await _wait_for(lambda: gate.waiting == 1)
            await _post(client, results, "refused", b"".join(split_body(audio_bytes(2.0))))
            hold.set()

    results = run_async(app, scenario)
    assert results["running"].status_code == results["waiting"].status_code == 200
    assert_error(results["refused"], 503, "busy")


def test_disk_budget_for_uploads(make_app, uploads):
    """Uploads on disk together stay within max_temp_mb: refused from Content-Length, or while streaming."""
    app = make_app(max_upload_mb=1, max_temp_mb=1.5)
    big = Stalled(audio_bytes(22.0), 900_000)  # 0.9 MB on disk, then it waits
    declared = b"".join(split_body(audio_bytes(16.0)))  # 0.7 MB

    async def scenario(client, gate, results):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_post, client, results, "big", big)
            await _wait_for(lambda: gate.budget.used >= 900_000)
            await _post(client, results, "declared", declared, {"Content-Length": str(len(declared))})
            streamed = Stalled(audio_bytes(16.0), 700_000)
            streamed.release.set()
            await _post(client, results, "streamed", streamed)
            results["folders"] = request_folders(uploads)
            big.release.set()

    results = run_async(app, scenario)
    for key in ("declared", "streamed"):
        assert "retry later" in assert_error(results[key], 503, "storage_full")["detail"]
    assert len(results["folders"]) == 1  # the refused uploads' folders are gone at once
    assert results["big"].status_code == 200
    assert app.state.settings.gate.budget.used == 0 and request_folders(uploads) == []


@pytest.mark.parametrize("which", ["idle", "total"])
def test_stalled_upload_times_out_with_408(make_app, uploads, which):
    limits = {"upload_idle_s": 0.3} if which == "idle" else {"upload_timeout_s": 0.6, "upload_idle_s": 0.3}
    app = make_app(**limits)
    head, rest = split_body(audio_bytes(4.0))

    async def trickle():
        yield head
        if which == "idle":
            await anyio.sleep(5)
        for i in range(0, len(rest), 1000):  # 1 kB every 0.1 s: never idle, never done in time
            await anyio.sleep(0.1)
            yield rest[i:i + 1000]

    async def scenario(client, gate, results):
        start = time.monotonic()
        await _post(client, results, "answer", trickle())
        results["seconds"] = time.monotonic() - start

    results = run_async(app, scenario)
    body = assert_error(results["answer"], 408, "upload_timeout")
    assert ("no data for 0.3 s" if which == "idle" else "within 0.6 s") in body["detail"]
    assert results["answer"].headers["connection"] == "close"
    assert results["seconds"] < 4  # well before the 5 s pause or the 13 s trickle, on a slow machine too
    assert request_folders(uploads) == []


def test_shutdown_ends_uploads_and_waits_with_json(make_app, model, uploads):
    """Gate.close (SIGTERM): uploading and waiting requests get 503 shutting_down; the running one finishes."""
    hold = threading.Event()
    fake = FakeModel(model, hold=hold)
    app = make_app(fake, concurrency=1)
    stall = Stalled(audio_bytes(3.0), 500)

    async def scenario(client, gate, results):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_post, client, results, "running", b"".join(split_body(audio_bytes(2.0))))
            await _wait_for(fake.started.is_set)
            tg.start_soon(_post, client, results, "waiting", b"".join(split_body(audio_bytes(2.0))))
            tg.start_soon(_post, client, results, "uploading", stall)
            await _wait_for(lambda: gate.waiting == 1 and gate.uploading == 1)
            gate.close()
            await _wait_for(lambda: "waiting" in results and "uploading" in results)
            results["health"] = (await client.get("/health")).json()
            await _post(client, results, "new", b"".join(split_body(audio_bytes(2.0))))
            hold.set()

    results = run_async(app, scenario)
    for key in ("waiting", "uploading", "new"):
        assert_error(results[key], 503, "shutting_down")
    assert results["running"].status_code == 200
    assert results["health"]["status"] == "shutting_down"
    assert request_folders(uploads) == []


def test_request_cancelled_by_the_server_answers_json_503():
    """uvicorn cancels requests still running when its graceful-shutdown time ends: JSON, not text/plain 500."""
    import asyncio

    from genrekit.service.app import AnswerWhenCancelled

    async def forever(scope, receive, send):
        await asyncio.sleep(3600)

    sent = []

    async def send(message):
        sent.append(message)

    async def main():
        task = asyncio.ensure_future(AnswerWhenCancelled(forever)({"type": "http"}, None, send))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    start, body = sent
    assert start["status"] == 503 and (b"content-type", b"application/json") in start["headers"]
    assert json.loads(body["body"])["error"] == "shutting_down"


# ------------------------------------------------------ temporary folders


@pytest.fixture
def other_process():
    """A live process that is not this one (its pid and start time), ended after the test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_clean_stale_removes_only_folders_of_dead_servers(tmp_path, other_process):
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead_tag = owner_tag(dead.pid)
    dead.kill()
    dead.wait()
    live = owner_tag(other_process.pid)
    pid, start = live.split(".")
    folders = {
        "dead": f"genrekit-serve-{dead_tag}-abc123",
        "reused-pid": f"genrekit-serve-{pid}.{int(start) + 1}-abc123",  # same pid, another process
        "live": f"genrekit-serve-{live}-abc123",
        "mine": f"genrekit-serve-{owner_tag()}-abc123",
        "not-ours": "genrekit-serve-abc123",  # the old naming: owner unknown
        "other": "something-else",
    }
    for name in folders.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "upload.wav").write_bytes(b"x" * 100)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (tmp_path / f"genrekit-serve-{dead_tag}-link").symlink_to(outside)
    (tmp_path / f"genrekit-serve-{dead_tag}-file").write_text("a file, not a folder")

    removed = clean_stale(tmp_path)

    assert sorted(p.name for p in removed) == sorted([folders["dead"], folders["reused-pid"]])
    left = {p.name for p in tmp_path.iterdir()}
    assert {folders[k] for k in ("live", "mine", "not-ours", "other")} <= left
    assert (outside / "keep.txt").read_text() == "keep" and (tmp_path / f"genrekit-serve-{dead_tag}-link").exists()
    assert process_start(os.getpid()) is not None or not Path("/proc/self/stat").exists()


def test_create_app_cleans_stale_folders(model, uploads):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    tag = owner_tag(dead.pid)
    dead.wait()
    uploads.mkdir()
    stale = uploads / f"genrekit-serve-{tag}-xyz"
    stale.mkdir()
    create_app(model, tmp_dir=uploads)
    assert not stale.exists()


# ------------------------------------------------------ numpy spectrogram


def test_pool_time_is_adaptive_average_pooling():
    from genrekit.service.inference import pool_time

    x = np.random.default_rng(0).standard_normal((3, 5, 187)).astype(np.float32)
    for columns in (1, 2, 7, 12, 100, 187):
        want = np.stack([x[..., (i * 187) // columns: -((-(i + 1) * 187) // columns)].mean(-1)
                         for i in range(columns)], axis=-1)
        np.testing.assert_allclose(pool_time(x, columns), want, rtol=1e-5, atol=1e-5)


def test_spectrogram_builder_is_bounded_when_the_header_understates(model):
    """A file giving far more segments than its header said: the buffer never grows, columns halve."""
    from genrekit.service.inference import SpectrogramBuilder

    builder = SpectrogramBuilder(expected_segments=10, capacity=400)
    image_id = None
    for _ in range(10):
        builder.add(np.ones((8, 96, 187), np.float32))
        image_id = image_id or id(builder.image)
        assert id(builder.image) == image_id and builder.image.shape == (96, 400)
        assert builder.n_segments * builder.columns <= 400
    assert builder.n_segments == 80 and builder.columns == 5
    payload = builder.payload(model.feature_config)
    assert payload["shape"] == [96, 80 * 5] and payload["n_segments"] == 80


def test_long_file_spectrogram_is_narrower(client):
    body = client.post("/v1/predict", params={"spectrogram": 1},
                       files={"file": ("long.wav", audio_bytes(100.0, sr=16000))}).json()
    spec = body["spectrogram"]
    assert spec["n_segments"] == len(body["segments"]) > 30
    assert spec["shape"][1] <= 2400 and spec["columns_per_segment"] == 2400 // spec["n_segments"] < 187


# --------------------------------------------------------------- light install


LIGHT_SCRIPT = r"""
import builtins, io, json, sys, traceback
first = {}
real_import = builtins.__import__
def spy(name, *args, **kwargs):
    root = name.split(".")[0]
    if root in HEAVY and root not in first:
        first[root] = "".join(traceback.format_stack(limit=6)[:-1])
    return real_import(name, *args, **kwargs)
builtins.__import__ = spy
import numpy as np, soundfile as sf
from fastapi.testclient import TestClient
from genrekit.service import create_app
app = create_app(runtime="onnx", tmp_dir=sys.argv[1], threads=1)
buf = io.BytesIO()
sf.write(buf, (0.2 * np.random.default_rng(0).standard_normal(6 * 22050)).astype("float32"), 22050, format="WAV")
with TestClient(app) as c:
    r = c.post("/v1/predict", params={"spectrogram": 1}, files={"file": ("n.wav", buf.getvalue())})
print(json.dumps({"status": r.status_code, "genre": r.json().get("genre"),
                  "heavy": sorted(m for m in HEAVY if m in sys.modules), "where": first}))
""".replace("HEAVY", repr(HEAVY))


def test_service_path_imports_no_torch(tmp_path):
    """The shipped ONNX model through the whole service path: torch, scipy and sklearn never imported."""
    run = subprocess.run([sys.executable, "-c", LIGHT_SCRIPT, str(tmp_path)], cwd=REPO, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["genre"]
    assert result["heavy"] == [], "imported on the service path:\n" + "\n".join(result["where"].values())


def test_cli_help_imports_nothing_heavy():
    code = ("import sys; from genrekit.cli import build_parser; p = build_parser(); "
            "p.parse_args(['serve', '--port', '9000']); "
            "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
    helptext = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--help"], cwd=REPO, capture_output=True,
                              text=True, env=env, timeout=120).stdout
    for option in ["--model", "--runtime", "--min-confidence", "--max-upload-mb", "--max-duration",
                   "--workers-threads", "--max-queue", "--max-uploads", "--max-temp-mb", "--upload-timeout",
                   "--upload-idle-timeout"]:
        assert option in helptext


def test_cli_reports_bad_settings(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for args, message in [(["--model", str(tmp_path / "nope.onnx")], "model not found"),
                          (["--max-upload-mb", "100", "--max-temp-mb", "50"], "max_temp_mb")]:
        run = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--port", "0", *args], cwd=REPO,
                             capture_output=True, text=True, env=env, timeout=120)
        assert run.returncode == 1 and message in run.stderr, run.stderr


def test_cli_says_in_one_line_that_the_port_is_taken():
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        run = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--port", str(port)], cwd=REPO,
                             capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    finally:
        taken.close()
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (f"genrekit serve: error: cannot listen on 127.0.0.1:{port}: "
                                                   "Address already in use")
    assert "startup complete" not in run.stderr + run.stdout


def test_serve_on_port_0_says_where_it_listens_and_answers_there():
    # run_server binds its socket itself (to say in one line when it cannot); port 0 is any free port.
    import re
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "genrekit", "serve", "--port", "0"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        for line in proc.stdout:
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if found:
                break
        url = f"http://127.0.0.1:{found.group(1)}/v1/model"
        for _ in range(100):  # the socket is bound before uvicorn starts serving it
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert json.load(response)["model_id"].startswith("genrekit-gtzan")
                    break
            except urllib.error.URLError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"no answer at {url}")
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130) and "Traceback" not in rest, rest  # 130: as Ctrl-C ends a command


def _cli_and_api(app, path, params: dict):
    """``genrekit predict --format json`` on ``path`` (its one result), and the service's response for it."""
    run = subprocess.run([sys.executable, "-m", "genrekit", "predict", "--format", "json", "--quiet", str(path)],
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    (cli,) = json.loads(run.stdout)
    with TestClient(app) as client:
        response = client.post("/v1/predict", params=params, files={"file": (path.name, path.read_bytes())})
    return cli, response


def test_predict_json_is_the_cli_json(make_app, tmp_path):
    """``?top_k=3`` gives exactly what ``genrekit predict --format json`` prints (default --top-k 3),
    with the whole shipped model (its detector included) on both sides."""
    from genrekit.prediction import load_model

    path = tmp_path / "noise.wav"
    path.write_bytes(audio_bytes(7.0, seed=5))
    cli, response = _cli_and_api(make_app(load_model()), path, {"top_k": 3})
    api = response.json()
    assert api.pop("processing_seconds") > 0
    assert cli.pop("path") == str(path) and api.pop("path") == path.name
    assert set(api) == set(cli)
    assert api["probabilities"] == pytest.approx(cli["probabilities"], abs=1e-4)
    assert list(api["probabilities"]) == list(cli["probabilities"])
    for a, c in zip(api["segments"], cli["segments"], strict=True):
        assert (a["start"], a["end"], a["genre"]) == (c["start"], c["end"], c["genre"])
    assert (api["genre"], api["abstain"], api["votes"], api["duration"]) == \
        (cli["genre"], cli["abstain"], cli["votes"], cli["duration"])


def test_a_silent_upload_is_not_music_as_the_cli_says(make_app, tmp_path):
    """All-silent audio is an answer, not an error: 200 and the JSON that ``genrekit predict`` prints."""
    from genrekit.prediction import load_model

    path = tmp_path / "quiet.wav"
    path.write_bytes(audio_bytes(5.0, kind="silence"))
    cli, response = _cli_and_api(make_app(load_model()), path, {"spectrogram": True})
    assert response.status_code == 200, response.text
    api = response.json()
    assert api.pop("processing_seconds") >= 0
    assert cli.pop("path") == str(path) and api.pop("path") == path.name
    assert api == cli and api["abstain"] == "not_music" and api["genre"] is None


@pytest.mark.parametrize("which", ["fma_mp3", "gtzan_wav"])
def test_predict_real_audio_matches_library(client, model, which, request):
    path = request.getfixturevalue(which)
    response = client.post("/v1/predict", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    assert_same_prediction(response.json(), model.predict_file(path), path.name)
    assert len(response.json()["segments"]) == 10


# ------------------------------------------------------------ real servers


def start_server(tmp_path, *args) -> bench.ServerProcess:
    return bench.ServerProcess(list(args), tmp_path / "uploads", tmp_path / "server.log")


def open_upload(url: str, declared: int, first: bytes) -> socket.socket:
    """A connection that sends the headers of a ``declared``-byte upload and ``first`` bytes of it, then stalls."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head, _ = split_body(b"")
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=" +
                 BOUNDARY + b"\r\nContent-Length: " + str(declared).encode() + b"\r\n\r\n" + head + first)
    return sock


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, dict, bytes]:
    """Status, headers and body of the server's answer (read until the body is complete or closed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_real_server_stalled_clients_are_bounded_and_released(tmp_path):
    """The hostile tester's stalled uploads: beyond --max-uploads they are refused at once; the
    others end with 408 after --upload-idle-timeout, and their sockets, files and folders go."""
    server = start_server(tmp_path, "--max-uploads", 4, "--upload-idle-timeout", 1.5)
    try:
        baseline = server.open_files()
        socks = [open_upload(server.url, 40_000_000, b"\0" * 4096) for _ in range(10)]
        wait_until(lambda: len(request_folders(server.tmp_dir)) == 4, 10, "4 uploads in progress")
        refused = []
        for sock in socks[4:]:
            status, headers, body = read_answer(sock, 5)
            refused.append((status, json.loads(body)["error"], headers.get("connection")))
        assert refused == [(503, "too_many_uploads", "close")] * 6
        for sock in socks[:4]:
            status, headers, body = read_answer(sock, 10)
            assert (status, headers["content-type"], json.loads(body)["error"]) == \
                (408, "application/json", "upload_timeout")
            sock.close()
        assert request_folders(server.tmp_dir) == []
        wait_until(lambda: server.open_files() <= baseline + 1, 5, "the server to close the stalled sockets")
        assert httpx.get(server.url + "/health").json()["uploading"] == 0
    finally:
        server.stop()


def test_real_server_sigterm_mid_upload_answers_json(tmp_path):
    server = start_server(tmp_path)
    sock = open_upload(server.url, 5_000_000, b"\0" * 4096)
    wait_until(lambda: len(request_folders(server.tmp_dir)) == 1, 10, "the upload to start")
    start = time.monotonic()
    server.send_signal(signal.SIGTERM)
    status, headers, body = read_answer(sock, 15)
    assert (status, headers["content-type"]) == (503, "application/json"), body
    assert json.loads(body)["error"] == "shutting_down"
    assert time.monotonic() - start < 5  # not after uvicorn's graceful-shutdown timeout
    assert server.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has stopped
    assert request_folders(server.tmp_dir) == []


def test_real_server_sigkill_leftovers_are_removed_at_next_start(tmp_path):
    first = start_server(tmp_path)
    sock = open_upload(first.url, 5_000_000, b"\0" * 4096)
    wait_until(lambda: len(request_folders(first.tmp_dir)) == 1, 10, "the upload to start")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    sock.close()
    (left,) = request_folders(first.tmp_dir)
    assert NAME.match(left.name)
    unrelated = first.tmp_dir / "genrekit-serve-handmade"
    unrelated.mkdir()
    second = start_server(tmp_path)
    try:
        assert not left.exists() and unrelated.exists()
        assert httpx.post(second.url + "/v1/predict", files={"file": ("a.wav", audio_bytes(3.0))}).status_code == 200
    finally:
        second.stop()


@pytest.mark.slow
def test_real_server_memory_is_bounded_per_request(tmp_path):
    """Two 90 s WAVs at once, two 384 kHz 8-channel FLACs: the server's peak stays bounded (the
    tester saw 2.4 GB for one 9-minute WAV, 3.5 GB for two, 4.8 GB for two such FLACs). Past one
    chunk of segments the peak does not depend on the length: 90 s is as long as 10 minutes."""
    server = start_server(tmp_path, "--workers-threads", 2)
    try:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            assert c.post("/v1/predict", files={"file": ("w.wav", audio_bytes(10.0))}).status_code == 200
            warm = server.rss_mb()
            long_wav = audio_bytes(90.0, sr=16000)

            def post(name, data, params=None):
                return c.post("/v1/predict", params=params, files={"file": (name, data)}).status_code

            with ThreadPoolExecutor(2) as pool:
                statuses = list(pool.map(lambda i: post(f"long{i}.wav", long_wav, {"spectrogram": i}), range(2)))
            flac = audio_bytes(10.0, sr=384000, channels=8, fmt="FLAC", kind="constant")
            statuses += [post("hi.flac", flac), post("hi2.flac", flac)]
        peak = server.peak_rss_mb()
        print(f"\nserver memory: {warm:.0f} MiB warm, peak {peak:.0f} MiB after two 90 s WAVs at once "
              f"and two 384 kHz 8-channel FLACs")
        assert statuses == [200] * 4
        assert peak - warm < 900, f"peak {peak:.0f} MiB, {peak - warm:.0f} MiB over the warm server's {warm:.0f}"
        assert request_folders(server.tmp_dir) == []
    finally:
        server.stop()


@pytest.mark.slow
def test_real_server_load_real_audio(shared_data, tmp_path, model, record_property):
    """16 uploads of real audio, 8 at a time, 2 workers: every answer is the library's for the file sent."""
    server = start_server(tmp_path, "--workers-threads", 2)
    try:
        files = [shared_data / f for f in bench.LOAD_FILES]
        want = {f: model.predict_file(f) for f in files}
        result = bench.run_load(server.url, files, n_requests=16, concurrency=8)
        rss = server.peak_rss_mb()
    finally:
        server.stop()
    s = result.summary()
    print(f"\nload: {s['requests']} requests, 8 at a time: {s['rps']:.2f} requests/s, peak RSS {rss:.0f} MiB")
    record_property("rps", s["rps"])
    record_property("peak_rss_mb", round(rss, 1))
    assert result.statuses == [200] * 16, result.statuses
    for f, body in zip(result.files, result.bodies, strict=True):
        assert_same_prediction(body, want[f], f.name)
    assert request_folders(server.tmp_dir) == []
