"""Speed work that must not change a number: the network run in chunks, its faster export, decoding
overlapped with the network (:class:`~genrekit.prediction.Ahead`), and the same results, in the same
order and with the same failures, whichever way a file or a list of files goes through."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from genrekit.errors import AudioError
from genrekit.prediction import Ahead, Failure, load_model
from genrekit.runtime import OnnxNetwork


@pytest.fixture(scope="module")
def model():
    return load_model()


def ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "genrekit-ahead"]


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


# --- Ahead --------------------------------------------------------------------------------

def test_ahead_keeps_order_and_raises_where_the_item_would_be():
    def items():
        yield from range(5)
        raise ValueError("sixth")

    got = []
    with pytest.raises(ValueError, match="sixth"), Ahead(items(), 2) as values:
        for value in values:
            got.append(value)
    assert got == [0, 1, 2, 3, 4] and not ahead_threads()


def test_leaving_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**6)
        finally:
            closed.set()

    with Ahead(items(), 2) as values:
        for value in values:
            if value == 3:
                break
    assert closed.is_set() and not ahead_threads()


def test_memory_is_bounded_by_depth():
    made = []

    def items():
        for i in range(100):
            made.append(i)
            yield i

    with Ahead(items(), 2) as values:
        next(iter(values))
        time.sleep(0.2)
        assert len(made) <= 4  # the one taken, 2 queued, 1 waiting to be queued
    assert not ahead_threads()


# --- predictions ----------------------------------------------------------------------------

def both_ways(model, run):
    """``run(model)`` without and with decoding overlapped."""
    results = []
    for overlap in (False, True):
        model.overlap = overlap
        try:
            results.append(run(model))
        finally:
            model.overlap = type(model).overlap
    return results


def test_overlapped_decoding_gives_the_same_prediction_and_batches(model, fma_mp3):
    def run(m):
        batches = []
        return m.predict_file(fma_mp3, on_batch=batches.append), np.concatenate(batches)

    (a, batches_a), (b, batches_b) = both_ways(model, run)
    assert a.probabilities == b.probabilities and a.segments == b.segments and a.duration == b.duration
    assert a.music_probability == b.music_probability and np.array_equal(batches_a, batches_b)
    assert not ahead_threads()


def test_errors_raised_while_decoding_are_the_same_both_ways(model, fma_mp3, tmp_path):
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(fma_mp3.read_bytes()[: fma_mp3.stat().st_size // 2])  # fails after its first blocks
    errors = both_ways(model, lambda m: pytest.raises(AudioError, m.predict_file, truncated).value)
    assert [type(e) for e in errors][0] is type(errors[1]) and str(errors[0]) == str(errors[1])
    assert not ahead_threads()


def test_a_failure_in_the_middle_keeps_order_and_the_others(model, fma_mp3, gtzan_wav, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 100)
    paths = [fma_mp3, bad, gtzan_wav, fma_mp3]
    for workers in (1, 2):
        plain, overlapped = both_ways(model, lambda m: list(m.predict_files(paths, workers=workers)))  # noqa: B023
        assert [r.path for r in overlapped] == [str(p) for p in paths]
        assert isinstance(overlapped[1], Failure) and overlapped[1].error == plain[1].error
        for a, b in zip(plain, overlapped):
            assert a.to_dict() == b.to_dict()
    assert not ahead_threads()


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
