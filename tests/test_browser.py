"""The web page of ``genrekit serve`` in a real browser (Debian's chromium via Playwright).

Needs /usr/bin/chromium (``apt-get install -y chromium``); Playwright's own browser
download is not used. With GENREKIT_SAVE_SCREENSHOTS=1 the screenshot of the page
with a result is also copied to docs/images/serve-page.png.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[1]
DOCS_SCREENSHOT = REPO / "docs" / "images" / "serve-page.png"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
httpx = pytest.importorskip("httpx")


def _server(tmp_path_factory, name: str, args):
    from tests.test_service import bench

    root = tmp_path_factory.mktemp(name)
    return bench.ServerProcess(args, root / "uploads", root / "server.log")


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory):
    s = _server(tmp_path_factory, "serve-browser", ["--workers-threads", 2])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def cautious_server(tmp_path_factory):
    """A server whose model abstains ("uncertain") unless it is certain: min_confidence 1."""
    s = _server(tmp_path_factory, "serve-cautious", ["--workers-threads", 1, "--min-confidence", 1.0])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS, headless=True, viewport={"width": 1200, "height": 900})
        yield context
        context.close()


@pytest.fixture
def open_page(browser_context):
    """Open a fresh tab on a server's page; any request that is not to the server fails the test."""
    opened = []

    def open_on(server):
        tab = browser_context.new_page()
        foreign, errors = [], []

        def only_local(route):
            if route.request.url.startswith(server.url):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        tab.route("**/*", only_local)
        tab.on("pageerror", lambda e: errors.append(str(e)))
        tab.goto(server.url + "/")
        tab.wait_for_function("document.getElementById('model-info').textContent.startsWith('model ')")
        opened.append((tab, foreign, errors))
        return tab

    yield open_on
    for tab, foreign, errors in opened:
        tab.close()
        assert foreign == [], f"the page reached outside the server: {foreign}"
        assert errors == [], f"JavaScript errors: {errors}"


@pytest.fixture
def page(open_page, server):
    return open_page(server)


def classify(page, path: Path, timeout_ms: int = 90_000) -> str:
    page.set_input_files("#file", str(path))
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=timeout_ms)
    return page.evaluate("document.body.dataset.state")


CANVAS_STATS = """(c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const colours = new Set(); let opaque = 0;
  for (let i = 0; i < d.length; i += 4 * 7) {
    if (d[i + 3] > 0) { opaque++; colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]); }
  }
  return {opaque: opaque / (d.length / (4 * 7)), colours: colours.size, drawn: c.dataset.drawn};
}"""


def test_page_classifies_an_uploaded_mp3(page, server, fma_mp3, tmp_path):
    api = httpx.post(f"{server.url}/v1/predict", files={"file": (fma_mp3.name, fma_mp3.read_bytes())},
                     timeout=120).json()
    labels = httpx.get(f"{server.url}/v1/model").json()["labels"]

    assert classify(page, fma_mp3) == "done", page.text_content("#error")
    assert page.text_content("#genre") == api["genre"]
    assert page.text_content("#filename") == fma_mp3.name
    assert page.is_visible("#result") and not page.is_visible("#error")

    bars = page.eval_on_selector_all("#bars rect[data-genre]",
                                     "rs => rs.map(r => [r.dataset.genre, r.getBBox().width])")
    assert sorted(g for g, _ in bars) == sorted(labels)
    assert all(w > 0 for _, w in bars) and bars[0][0] == api["genre"]
    assert max(bars, key=lambda b: b[1])[0] == api["genre"]

    stats = page.eval_on_selector("#spectrogram", CANVAS_STATS)
    assert stats["drawn"] == str(len(api["segments"]))
    assert stats["opaque"] > 0.5 and stats["colours"] > 100, stats

    strip = page.eval_on_selector_all("#segment-strip .cell", "cs => cs.map(c => c.dataset.genre)")
    assert strip == [s["genre"] for s in api["segments"]]
    assert page.locator("#votes li").count() == len(api["votes"])

    shot = tmp_path / "serve-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("GENREKIT_SAVE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_page_shows_the_server_error_and_recovers(page, server, fma_mp3, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_bytes(b"this is not audio\n" * 200)
    api = httpx.post(f"{server.url}/v1/predict", files={"file": (bad.name, bad.read_bytes())}).json()
    assert api["error"] == "not_audio"

    assert classify(page, bad) == "error"
    assert page.is_visible("#error") and not page.is_visible("#result")
    message = page.text_content("#error")
    assert api["detail"] in message and "415" in message

    assert classify(page, fma_mp3) == "done"
    assert not page.is_visible("#error") and page.text_content("#genre")


def _noise_wav(path: Path, seconds: float = 6.0) -> Path:
    import numpy as np
    import soundfile as sf

    sf.write(path, (0.2 * np.random.default_rng(7).standard_normal(int(seconds * 22050))).astype("float32"), 22050)
    return path


def _music_wav(path: Path, seconds: float = 6.0) -> Path:
    """A synthetic rock stand-in: music to the model's detector (white noise is not, since 2026-12-02)."""
    import soundfile as sf

    from tests.conftest import synthetic_track

    sf.write(path, synthetic_track("rock", 1, seconds, 22050), 22050)
    return path


def test_page_says_uncertain_in_words(open_page, cautious_server, tmp_path):
    """A model that abstains: the headline names no genre but says why and the best guess; bars still drawn."""
    path = _music_wav(tmp_path / "rock.wav")
    api = httpx.post(f"{cautious_server.url}/v1/predict", files={"file": (path.name, path.read_bytes())},
                     timeout=120).json()
    assert api["genre"] is None and api["abstain"] == "uncertain"
    guess, p = next(iter(api["probabilities"].items()))

    tab = open_page(cautious_server)
    assert classify(tab, path) == "done", tab.text_content("#error")
    assert tab.text_content("#genre") == f"Uncertain — best guess: {guess} {round(100 * p)} %"
    assert tab.text_content("#genre-label") == "No genre"
    assert "threshold of 100 %" in tab.text_content("#verdict-note")
    bars = tab.eval_on_selector_all("#bars rect[data-genre]", "rs => rs.map(r => r.dataset.genre)")
    assert sorted(bars) == sorted(api["probabilities"]) and bars[0] == guess
    assert tab.get_attribute("#result", "data-abstain") == "uncertain"


def test_page_says_not_music_in_words(open_page, cautious_server, tmp_path):
    """The not-music answer, from the shipped model's detector (white noise)."""
    path = _noise_wav(tmp_path / "noise.wav")
    real = httpx.post(f"{cautious_server.url}/v1/predict", params={"spectrogram": 1},
                      files={"file": (path.name, path.read_bytes())}, timeout=120).json()
    assert real["genre"] is None and real["abstain"] == "not_music", real

    tab = open_page(cautious_server)
    assert classify(tab, path) == "done", tab.text_content("#error")
    assert tab.text_content("#genre") == "Not music"
    assert f"music probability {round(100 * real['music_probability'])} %" in tab.text_content("#verdict-note")
    assert tab.locator("#bars rect[data-genre]").count() == len(real["probabilities"])
    assert tab.get_attribute("#result", "data-abstain") == "not_music"


def test_page_says_a_silent_file_is_not_music(open_page, cautious_server, tmp_path):
    """All-silent audio is answered (200, not music, no probabilities); the page says so without errors."""
    import numpy as np
    import soundfile as sf

    path = tmp_path / "gap.wav"
    sf.write(path, np.zeros(5 * 22050, np.float32), 22050)
    tab = open_page(cautious_server)
    assert classify(tab, path) == "done", tab.text_content("#error")
    assert tab.text_content("#genre") == "Not music"
    assert "silent" in tab.text_content("#verdict-note")
    assert tab.text_content("#duration") == "–" and tab.text_content("#confidence") == "–"
    assert tab.locator("#bars rect[data-genre]").count() == 0
