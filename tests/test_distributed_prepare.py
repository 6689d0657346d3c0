"""Distributed prepare on Ray: the cache it writes is the single-machine cache.

One local Ray (2 CPUs) serves the whole module; the reference is
:func:`genrekit.cache.prepare` run in-process on the same tracks.
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from genrekit.cache import CacheStore, FeatureCache, PrepareOptions, prepare
from genrekit.cache.local import open_for_writing
from genrekit.config import FeatureConfig
from genrekit.datasets import open_dataset
from genrekit.datasets.base import Dataset, Track
from genrekit.errors import CacheError, ConfigError, MissingExtraError
from tests.conftest import SHARED_DATA, TINY_LABELS, has_shared_data, synthetic_track

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Dataset:
    """4 WAVs at 22.05 kHz, 2 at 16 kHz, 4 stereo MP3s and one corrupt WAV: GTZAN and FMA files of
    ../shared/data, or synthetic stand-ins of the same formats where the data is absent (the test
    is that both engines write the same cache, whatever the music)."""
    folder = tmp_path_factory.mktemp("audio")
    tracks = real_tracks(SHARED_DATA) if has_shared_data() else standin_tracks(folder)
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    return Dataset("mixed", str(folder), tracks + [Track("corrupt.00000", str(corrupt), "rock", "train")])


def real_tracks(data: Path) -> list[Track]:
    gtzan = open_dataset(f"gtzan:{data}", splits=data / "gtzan_labels.csv").tracks
    fma = open_dataset(f"fma:{data / 'fma_small'}", metadata=data / "fma_metadata" / "labels.csv").tracks
    wav22 = [t for t in gtzan if "/gtzan/" in t.path][:4]
    wav16 = [t for t in gtzan if "/gtzan_16k/" in t.path][:2]
    assert len(wav22) == 4 and len(wav16) == 2 and len(fma) >= 4
    return wav22 + wav16 + fma[:4]


def standin_tracks(folder: Path) -> list[Track]:
    import soundfile as sf

    formats = [(22050, 1, "WAV", "PCM_16")] * 4 + [(16000, 1, "WAV", "PCM_16")] * 2 + [(44100, 2, "MP3", None)] * 4
    tracks = []
    for i, (sr, channels, kind, subtype) in enumerate(formats):
        label = TINY_LABELS[i % 2]
        y = np.stack([synthetic_track(label, i + c, 8.0, sr) for c in range(channels)], axis=1)
        path = folder / f"standin.{i:05d}.{kind.lower()}"
        sf.write(path, y, sr, format=kind, subtype=subtype)
        tracks.append(Track(path.stem, str(path), label, "train", artist=f"artist {i}"))
    return tracks


@pytest.fixture(scope="module")
def local_cache(mixed, tmp_path_factory):
    """The reference: the single-machine prepare, in this process (no fork beside Ray)."""
    out = tmp_path_factory.mktemp("local") / "cache"
    summary = prepare(mixed, out, workers=1, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cache(mixed, ray_session, tmp_path_factory):
    from genrekit.cache.ray import prepare_ray

    out = tmp_path_factory.mktemp("ray") / "cache"
    summary = prepare_ray(mixed, out, progress=False, tracks_per_task=3)
    return out, summary


# ---------------------------------------------------------------- helpers

def content(root):
    """A cache's content, independent of how tracks are grouped into shards."""
    cache = FeatureCache(root)
    tracks = cache.tracks.drop(columns=["shard", "row"]).reset_index(drop=True)
    arrays = {row.track_id: np.asarray(cache.track_segments(row)) for row in cache.tracks.itertuples()}
    return cache, tracks, arrays


def assert_same_cache(a, b):
    cache_a, tracks_a, arrays_a = content(a)
    cache_b, tracks_b, arrays_b = content(b)
    assert cache_a.manifest == cache_b.manifest
    assert tracks_a.to_dict("records") == tracks_b.to_dict("records")  # ids, paths, labels, splits, durations
    assert arrays_a.keys() == arrays_b.keys()
    for track_id, x in arrays_a.items():
        assert x.dtype == np.float16 and x.shape == arrays_b[track_id].shape, track_id
        assert np.array_equal(x, arrays_b[track_id]), f"segments of {track_id} differ"
    assert cache_a.failures == cache_b.failures
    assert (Path(a) / "failures.csv").read_text() == (Path(b) / "failures.csv").read_text()


def shard_files(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((Path(root) / "shards").iterdir())}


# ---------------------------------------------------------------- the Ray cache is the local cache

def test_ray_cache_equals_single_machine_cache(local_cache, ray_cache):
    (local, local_summary), (out, summary) = local_cache, ray_cache
    assert_same_cache(local, out)
    assert len(FeatureCache(out)) == 10
    assert [f["track_id"] for f in FeatureCache(out).failures] == ["corrupt.00000"]
    assert "corrupt" in FeatureCache(out).failures[0]["reason"]
    assert (summary.done, summary.skipped) == (local_summary.done, local_summary.skipped) == (10, 0)
    assert summary.failed == local_summary.failed
    assert summary.audio_seconds == pytest.approx(local_summary.audio_seconds)
    assert summary.tasks == 4 and len(list((out / "shards").glob("*.json"))) == 4  # 11 tracks, 3 per task
    assert not summary.interrupted and summary.lost == []


def test_a_task_writes_one_shard_through_the_cache_format(ray_session, mixed, tmp_path):
    from genrekit.cache.ray import _prepare_batch

    open_for_writing(tmp_path / "c", FeatureConfig(), mixed)
    task = ray_session.remote(_prepare_batch).options(num_cpus=1)
    result = ray_session.get(task.remote(str(tmp_path / "c"), "one", mixed.tracks[:1], FeatureConfig(),
                                         PrepareOptions()))
    assert [track_id for track_id, _ in result["done"]] == [mixed.tracks[0].track_id]
    assert len(FeatureCache(tmp_path / "c")) == 1


# ---------------------------------------------------------------- resume

def test_resume_skips_done_tracks_and_retries_failed_ones(mixed, ray_session, tmp_path):
    from genrekit.cache.ray import prepare_ray

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all" * 100)
    dataset = Dataset("resume", str(tmp_path), mixed.tracks[:4] + [Track("broken.00000", str(broken), "rock", "train")])
    out = tmp_path / "cache"

    first = prepare_ray(dataset, out, progress=False, tracks_per_task=2)
    assert (first.done, first.skipped, len(first.failed)) == (4, 0, 1)
    before = shard_files(out)

    second = prepare_ray(dataset, out, progress=False, tracks_per_task=2)
    assert (second.done, second.skipped, len(second.failed)) == (0, 4, 1)  # the failed track is tried again
    after = shard_files(out)
    assert {k: after[k] for k in before} == before  # complete shards untouched
    assert len(after) == len(before) + 1  # one new shard: the json holding the retried failure

    # a run killed before a shard's json was written: exactly its tracks are redone
    lost = next(p for p in sorted((out / "shards").glob("*.json")) if (out / "shards" / f"{p.stem}.npy").exists())
    lost_ids = {rec["track_id"] for rec in json.loads(lost.read_text())["tracks"]}
    lost.unlink()
    third = prepare_ray(dataset, out, progress=False, tracks_per_task=2)
    assert (third.done, third.skipped) == (len(lost_ids), 4 - len(lost_ids))

    shutil.copy(mixed.tracks[4].path, broken)  # the failed file is repaired
    fourth = prepare_ray(dataset, out, progress=False, tracks_per_task=2)
    assert (fourth.done, fourth.skipped, fourth.failed) == (1, 4, [])
    cache = FeatureCache(out)
    assert sorted(cache.tracks["track_id"]) == sorted(t.track_id for t in dataset.tracks)
    assert cache.failures == []
    assert (out / "failures.csv").read_text().strip() == "track_id,path,reason"


# ---------------------------------------------------------------- fsspec targets and fetch_cache

def test_file_url_target_then_fetch_cache(mixed, ray_session, local_cache, tmp_path):
    from genrekit.cache import fetch_cache
    from genrekit.cache.ray import prepare_ray

    url = (tmp_path / "remote").as_uri()
    assert url.startswith("file://")
    summary = prepare_ray(mixed, url, progress=False, tracks_per_task=4)
    assert (summary.done, len(summary.failed)) == (10, 1)
    assert not [p for p in (tmp_path / "remote").rglob("*") if p.name.endswith(".tmp")]

    fetched = fetch_cache(url, tmp_path / "local")
    assert (fetched.copied, fetched.skipped) == (3 * 2 + 1, 0)  # 3 shards x (npy + json) + failures.csv
    assert_same_cache(local_cache[0], tmp_path / "local")
    again = fetch_cache(url, tmp_path / "local")
    assert (again.copied, again.skipped) == (0, 6 + 1)

    resumed = prepare_ray(mixed, url, progress=False)  # the index is read through fsspec
    assert (resumed.done, resumed.skipped, len(resumed.failed)) == (0, 10, 1)
    with pytest.raises(CacheError, match="other feature settings"):
        prepare_ray(mixed, url, FeatureConfig(n_mels=64), progress=False)


def test_fetch_cache_from_memory_url(local_cache, tmp_path):
    import fsspec

    from genrekit.cache import fetch_cache

    url = f"memory://genrekit-test-{uuid.uuid4().hex[:8]}/cache"
    fs = fsspec.filesystem("memory")
    fs.put(str(local_cache[0]), url, recursive=True)
    fs.pipe_file(f"{url}/shards/.half-written.npy.1234.tmp", b"partial")
    summary = fetch_cache(url, tmp_path / "copy")
    files = [p for p in Path(local_cache[0]).rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert summary.copied == len(files) - 1  # all files but manifest.json (and the writer's lock)
    assert not list((tmp_path / "copy" / "shards").glob("*.tmp"))
    assert_same_cache(local_cache[0], tmp_path / "copy")
    fs.rm(url.split("/cache")[0], recursive=True)


def test_fetch_cache_refuses_another_cache_and_non_caches(local_cache, ray_cache, tmp_path):
    from genrekit.cache import fetch_cache

    with pytest.raises(CacheError, match="no manifest.json"):
        fetch_cache(str(tmp_path / "nothing"), tmp_path / "dst")
    other = tmp_path / "other"
    CacheStore(other).write_manifest(FeatureConfig(n_mels=64), {"name": "other"})
    with pytest.raises(CacheError, match="holds another cache"):
        fetch_cache(str(local_cache[0]), other)


def test_a_url_and_a_folder_get_byte_identical_files(tmp_path):
    rng = np.random.default_rng(0)
    records = [{"track_id": "a", "label": "x", "n_segments": 2}, {"track_id": "b", "label": "y", "n_segments": 3}]
    arrays = [rng.normal(size=(2, 4, 5)).astype(np.float16), rng.normal(size=(3, 4, 5)).astype(np.float16)]
    failures = [{"track_id": "c", "path": "/c.wav", "reason": "corrupt or truncated audio"}]
    config, description = FeatureConfig(n_mels=4), {"name": "bytes"}

    local = CacheStore(tmp_path / "local")
    local.write_manifest(config, description)
    local.write_shard("s1", copy.deepcopy(records), arrays, failures)
    target = CacheStore(f"memory://genrekit-test-{uuid.uuid4().hex[:8]}")
    target.write_manifest(config, description)
    target.write_shard("s1", copy.deepcopy(records), arrays, failures)

    for name in ("manifest.json", "shards/s1.npy", "shards/s1.json"):
        assert target.fs.cat_file(target.path(name)) == (tmp_path / "local" / name).read_bytes(), name
    assert np.array_equal(np.load(tmp_path / "local" / "shards" / "s1.npy"), np.concatenate(arrays))
    assert target.index().failures == FeatureCache(tmp_path / "local").failures
    target.fs.rm(target.root, recursive=True)


def test_memory_url_is_refused_for_ray(mixed, ray_session):
    from genrekit.cache.ray import prepare_ray

    with pytest.raises(CacheError, match="memory://"):
        prepare_ray(mixed, "memory://genrekit-test/cache", progress=False)


def test_shards_invisible_to_the_driver_are_an_error(mixed, ray_session, monkeypatch):
    """As on a cluster writing to node-local folders: the workers' memory:// is not the driver's."""
    from genrekit.cache.ray import prepare_ray

    real_init = CacheStore.__init__

    def not_process_local(self, location):  # in the driver only
        real_init(self, location)
        self.process_local = False

    monkeypatch.setattr(CacheStore, "__init__", not_process_local)
    dataset = Dataset("two", mixed.root, mixed.tracks[:2])
    with pytest.raises(CacheError, match="not visible .* shared storage"):
        prepare_ray(dataset, f"memory://genrekit-test-{uuid.uuid4().hex[:8]}/cache", progress=False)


def test_tracks_per_task_must_be_positive(mixed, tmp_path):
    pytest.importorskip("ray")
    from genrekit.cache.ray import prepare_ray

    with pytest.raises(ConfigError, match="tracks_per_task"):
        prepare_ray(mixed, tmp_path / "c", tracks_per_task=0)


def test_an_address_where_nothing_listens_fails_at_once_and_no_address_starts_a_new_local_ray(mixed, tmp_path,
                                                                                              monkeypatch):
    ray = pytest.importorskip("ray")
    from genrekit.cache.ray import ClusterError, prepare_ray
    from genrekit.training.launcher import free_port

    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        raise ValueError("stop")  # what ray.init raises for arguments it refuses

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    address = f"127.0.0.1:{free_port()}"
    # ray.init would retry this address for minutes, deaf to Ctrl-C for half a minute at a time
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at {address}: Connection refused"):
        prepare_ray(mixed, tmp_path / "a", address=address, progress=False)
    assert calls == []
    # ray.init() alone would join a cluster that `ray start --head` left running here, and refuse num_cpus
    with pytest.raises(ClusterError, match="stop"):
        prepare_ray(mixed, tmp_path / "b", progress=False)
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] >= 1


# ---------------------------------------------------------------- Ray stays optional

def test_clear_error_without_ray(monkeypatch, mixed, shared_data, tmp_path, capsys):
    from genrekit.cache.ray import prepare_ray
    from genrekit.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'genrekit\[ray\]'"):
        prepare_ray(mixed, tmp_path / "c")
    assert not (tmp_path / "c").exists()

    code = main(["prepare", f"gtzan:{shared_data}", "--splits", str(shared_data / "gtzan_labels.csv"),
                 "--out", str(tmp_path / "c"), "--engine", "ray", "--quiet"])
    assert code == 1
    assert "pip install 'genrekit[ray]'" in capsys.readouterr().err


def test_genrekit_and_local_prepare_never_import_ray(gtzan_wav, tmp_path):
    code = f"""
import sys
import genrekit, genrekit.cache, genrekit.cli.prepare
import genrekit.cache.ray
from genrekit.datasets.base import Dataset, Track
summary = genrekit.cache.prepare(Dataset("one", "", [Track("t", {str(gtzan_wav)!r}, "rock")]), {str(tmp_path)!r},
                                 workers=1, progress=False)
assert summary.done == 1, summary.report()
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_fetch_prune_deletes_only_shards_genrekit_wrote(tmp_path):
    from genrekit.cache import fetch_cache
    from genrekit.cache.format import new_shard_name

    source, local = CacheStore(tmp_path / "source"), tmp_path / "copy"
    source.write_manifest(FeatureConfig(n_mels=4), {"name": "prune"})
    source.write_shard(new_shard_name(), [], [], [{"track_id": "a", "path": "/a.wav", "reason": "x"}])
    fetch_cache(str(tmp_path / "source"), local)
    gone = new_shard_name()
    CacheStore(local).write_shard(gone, [], [], [])  # a shard the source no longer has
    (local / "shards" / "notes.json").write_text("mine")
    assert fetch_cache(str(tmp_path / "source"), local, prune=True).pruned == 1
    assert (local / "shards" / "notes.json").read_text() == "mine" and not (local / "shards" / f"{gone}.json").exists()


def test_ray_processes_left_by_a_ctrl_c_while_ray_starts_are_stopped_and_nothing_else():
    """Ctrl-C during ``ray.init`` orphaned Ray's two agents for about a minute. The clean-up stops
    the ``ray::`` processes of this process group started since ``ray.init`` began: not a
    program beside genrekit in the same pipeline, not Ray processes that were there before."""
    import subprocess
    import time as clock

    pytest.importorskip("psutil")
    from genrekit.cache.ray import _stop_ray_processes_since

    ray_dir = Path("/opt/venv/lib/site-packages/ray")

    def spawn(name):  # in this process group, as the terminal's pipeline would be
        return subprocess.Popen(["bash", "-c", f'exec -a "{name}" sleep 60'])

    before = spawn("ray::OlderAgent")
    clock.sleep(1.5)
    since = clock.time()
    agent, raylet, neighbour = spawn("ray::DashboardAgent"), spawn(f"{ray_dir}/core/src/ray/raylet/raylet"), spawn("tee")
    try:
        clock.sleep(0.3)
        stopped = _stop_ray_processes_since(since, ray_dir)
        assert {agent.pid, raylet.pid} <= set(stopped)
        assert agent.wait(timeout=5) is not None and raylet.wait(timeout=5) is not None
        assert neighbour.poll() is None and before.poll() is None
        assert neighbour.pid not in stopped and before.pid not in stopped
    finally:
        for proc in (before, agent, raylet, neighbour):
            proc.kill()
            proc.wait()
