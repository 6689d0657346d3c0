"""Speed work that must not change a number: the network run in chunks, its faster export, numpy's
BLAS on one thread, and the same results, in the same order and with the same failures, whichever
way a list of files goes through."""
from __future__ import annotations

import numpy as np
import pytest

from genrekit.prediction import Failure, load_model
from genrekit.runtime import OnnxNetwork


@pytest.fixture(scope="module")
def model():
    return load_model()


def patches(n: int = 7, seed: int = 0) -> np.ndarray:
    return (2.0 * np.random.default_rng(seed).standard_normal((n, 96, 187)) + 1.0).astype(np.float32)


# --- the network ------------------------------------------------------------------------

def test_chunked_outputs_equal_one_run(model):
    x = patches()
    whole = OnnxNetwork(model.source, chunk=len(x)).run(x)
    for chunk in (1, 2, 3):
        got = OnnxNetwork(model.source, chunk=chunk).run(x)
        for name, value in whole.items():
            assert got[name].shape == value.shape
            assert np.abs(got[name] - value).max() <= 1e-5, (chunk, name)


def test_reexported_network_is_faster_in_form_and_equal_in_numbers(model):
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from genrekit.export import reexport_musicnn

    data = reexport_musicnn(model.source)
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert "MaxPool" in ops and "ReduceMin" not in ops, ops  # one max, pooled in the blocked layout
    new = OnnxNetwork(data)
    assert new.metadata == model.network.metadata and new.output_names == model.network.output_names
    x = patches(5, seed=1)
    old_out, new_out = model.network.run(x), new.run(x)
    for name, value in old_out.items():
        assert np.abs(new_out[name] - value).max() <= 1e-5, name


def test_eval_forward_in_torch_and_exported_form_agree():
    torch = pytest.importorskip("torch")
    from genrekit.models import musicnn

    torch.manual_seed(0)
    block = musicnn.FrontEndBlock(20, (7, 38), (3, 3)).eval()  # 20 filters: padded to 32 when exported
    with torch.no_grad():
        block.bn.weight.normal_()
        block.bn.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 1, 187, 96)
        assert (block.bn.weight < 0).any() and (block.bn.weight > 0).any()
        exported = block._exported_forward(torch.nn.functional.pad(x, (0, 0, 3, 3)))
        assert exported.shape == (2, 20, 187)
        assert torch.allclose(exported, block(x), atol=1e-6, rtol=0)


# --- predictions ----------------------------------------------------------------------------

def blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_blas_thread_changes_no_number_and_is_restored(model, fma_mp3, monkeypatch):
    from threadpoolctl import threadpool_limits

    from genrekit.features import FeatureExtractor

    seen, power = [], FeatureExtractor._power
    monkeypatch.setattr(FeatureExtractor, "_power", lambda self, f: seen.append(blas_threads()) or power(self, f))
    before = blas_threads()
    results = []
    for threads in (2, 1):  # numpy's BLAS on 2 threads, or limited to 1 by the caller
        with threadpool_limits(limits=threads, user_api="blas"):
            results.append(model.predict_file(fma_mp3))
    assert results[0].probabilities == results[1].probabilities and results[0].segments == results[1].segments
    assert seen and all(n == 1 for n in seen[0]) and blas_threads() == before  # one thread inside, as before after


def test_features_in_a_worker_thread_equal_those_in_the_main_thread():
    """threadpoolctl lets only the thread that first set OpenBLAS's threads set them again; the limit
    must still hold in the worker threads of predict_files after the main thread used it."""
    from concurrent.futures import ThreadPoolExecutor

    from genrekit.config import FeatureConfig
    from genrekit.features import FeatureExtractor

    extractor = FeatureExtractor(FeatureConfig())
    signals = np.random.default_rng(1).standard_normal((20, 22050 * 3)).astype(np.float32)
    main = extractor.frames_to_features(signals)
    with ThreadPoolExecutor(1) as pool:
        worker = pool.submit(extractor.frames_to_features, signals).result()
    assert np.array_equal(main, worker)


def test_a_failure_in_the_middle_keeps_order_and_the_others(model, fma_mp3, gtzan_wav, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    paths = [fma_mp3, bad, gtzan_wav, fma_mp3]
    one, two = (list(model.predict_files(paths, workers=w)) for w in (1, 2))
    assert [r.path for r in two] == [str(p) for p in paths]
    assert isinstance(two[1], Failure) and two[1].error == one[1].error
    for a, b in zip(one, two):
        assert a.to_dict() == b.to_dict()


def test_several_files_share_the_cores_in_the_api_as_in_the_cli(monkeypatch, fma_mp3, gtzan_wav):
    import genrekit.prediction as prediction
    from genrekit.runtime import available_cores

    asked = []
    real = prediction.load_model

    def spy(model=None, device="cpu", **kwargs):
        asked.append(kwargs.get("threads"))
        return real(model, device, **kwargs)

    monkeypatch.setattr(prediction, "load_model", spy)
    prediction.predict(fma_mp3)
    results = prediction.predict([fma_mp3, gtzan_wav])
    assert asked == [None, max(1, available_cores() // prediction.FILE_WORKERS)]
    assert [r.path for r in results] == [str(fma_mp3), str(gtzan_wav)]


def test_musicnn_export_carries_the_segment_level_and_refuses_other_settings():
    """A genre model's segment level travels in the file (prediction reads it from there)."""
    import dataclasses

    pytest.importorskip("torch")
    from genrekit.config import MUSICNN_FEATURES
    from genrekit.errors import ConfigError
    from genrekit.export import musicnn_onnx_bytes

    levelled = dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=-15.0, max_gain_db=15.0)
    net = OnnxNetwork(musicnn_onnx_bytes(["MSD_musicnn"], {"kind": "tagger"}, feature_config=levelled))
    assert net.metadata["feature_config"] == levelled.to_dict()
    with pytest.raises(ConfigError, match="musicnn needs its own input settings"):
        musicnn_onnx_bytes(["MSD_musicnn"], {"kind": "tagger"}, feature_config=dataclasses.replace(levelled, n_mels=64))


def test_strided_graph_runs_mtt_on_every_kth_patch_whatever_the_batches():
    """The graph's held MTT outputs are the head's hold of MTT run on every patch, batched as prediction batches."""
    pytest.importorskip("torch")
    from genrekit.config import PATCH_BATCH
    from genrekit.export import musicnn_onnx_bytes, reexport_musicnn
    from genrekit.heads import hold_strided

    x = np.random.default_rng(0).normal(size=(PATCH_BATCH + 7, 96, 187)).astype(np.float32)
    full = OnnxNetwork(musicnn_onnx_bytes(["MSD_musicnn", "MTT_musicnn"], {"kind": "tagger"}, kinds=("tags",)))
    strided_bytes = musicnn_onnx_bytes(["MSD_musicnn", "MTT_musicnn"], {"kind": "tagger"}, kinds=("tags",),
                                       patch_strides={"MTT_musicnn": 4})
    strided = OnnxNetwork(strided_bytes)
    assert strided.chunk == 4 and strided.metadata["patch_strides"] == {"MTT_musicnn": 4}
    expected = hold_strided(full.run(x), {"MTT_musicnn": 4})
    batches = [strided.run(x[i:i + PATCH_BATCH]) for i in range(0, len(x), PATCH_BATCH)]
    for name in expected:
        got = np.concatenate([b[name] for b in batches])
        np.testing.assert_allclose(got, expected[name], atol=1e-4)
    assert not np.allclose(expected["MTT_musicnn/tags"], full.run(x)["MTT_musicnn/tags"], atol=1e-3)
    assert OnnxNetwork(reexport_musicnn(strided_bytes)).metadata["patch_strides"] == {"MTT_musicnn": 4}


def test_model_whose_graph_and_head_strides_differ_is_refused():
    from genrekit.config import MUSICNN_FEATURES
    from genrekit.errors import CheckpointError
    from genrekit.heads import zero_shot_head
    from genrekit.prediction import GenreClassifier

    head = zero_shot_head(["blues", "classical"])
    meta = {"kind": "track_head", "labels": ["blues", "classical"], "head": head.to_dict(),
            "feature_config": MUSICNN_FEATURES.to_dict()}

    class Graph:
        output_names = ["MTT_musicnn/tags"]
        patch_strides = {"MTT_musicnn": 4}

    with pytest.raises(CheckpointError, match="m.onnx: the graph's patch strides"):
        GenreClassifier(Graph(), meta, "m.onnx")
    Graph.patch_strides = {}
    assert GenreClassifier(Graph(), meta, "m.onnx").head.patch_strides == {}
