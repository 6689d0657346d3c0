"""musicnn port: checkpoint reader, shipped weights, parity with the TensorFlow original, CLI.

Reference outputs in tests/fixtures/musicnn/ were made once with musicnn 0.1.0 on
TensorFlow by tools/make_musicnn_reference.py (see its docstring for the two documented
deviations: loud clips scaled down by a power of two, librosa 0.7's reflect padding and
kaiser_best resampler).
"""
from __future__ import annotations

import importlib.util
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genrekit.config import MUSICNN_FEATURES
from genrekit.errors import CheckpointError, ConfigError
from genrekit.features import waveform_segments
from genrekit.models import ModelConfig, build_model, get_backbone, musicnn
from genrekit.models.musicnn import MusiCNN, load_musicnn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))  # the TensorFlow checkpoint reader is a tool, not part of the package
from tf_checkpoint import (  # noqa: E402
    TABLE_MAGIC,
    CheckpointFormatError,
    crc32c,
    iter_block,
    load_checkpoint,
    masked_crc32c,
    read_block,
    read_index,
)

FIXTURES = REPO / "tests" / "fixtures" / "musicnn"
CLIPS = ("classical.00045", "metal.00051", "rock.00001")
MODELS = ("MTT_musicnn", "MSD_musicnn")


@pytest.fixture(scope="module")
def models():
    return {name: load_musicnn(name) for name in MODELS}


def reference(clip: str) -> dict:
    with np.load(FIXTURES / f"{clip}.npz") as z:
        return {k: z[k] for k in z.files}


def taggram(y: np.ndarray, model: MusiCNN, sr: int):
    """The PyTorch port's taggram of a waveform (the ONNX tagger is held to it in test_tagger.py)."""
    from genrekit.tagger import _resampled

    patches = torch.as_tensor(waveform_segments(_resampled(y, sr), MUSICNN_FEATURES))
    with torch.no_grad():
        return model.predict(patches).numpy(), list(model.tags)


def top(probs: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-probs.mean(axis=0))[:k])


def square_wave(seconds: float, sr: int = 16000, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32)


# --- TF checkpoint reader ----------------------------------------------------------

def tiny_expected() -> dict[str, np.ndarray]:
    """What tools/make_musicnn_reference.py --tiny-checkpoint saved with TensorFlow's SaveV2."""
    tensors = {
        "conv/kernel": (np.arange(24, dtype=np.float32).reshape(2, 3, 1, 4) / 7).astype(np.float32),
        "dense/bias": np.linspace(-1, 1, 5),
        "global_step": np.array(123456789012, np.int64),
        "half": np.array([1.5, -2.25, 65504], np.float16),
        "ints": np.array([-1, 0, 2**31 - 1], np.int32),
        "flags": np.array([True, False, True]),
        "u8": np.arange(5, dtype=np.uint8),
        "empty": np.zeros((0, 3), np.float32),
    }
    for i in range(20):
        tensors[f"layer_{i:02d}/weights"] = np.full((i + 1,), i, np.float32) - np.float32(0.5)
    return tensors


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0


def test_reader_reads_a_real_tensorflow_checkpoint():
    got = load_checkpoint(FIXTURES / "tiny_ckpt")
    want = tiny_expected()
    assert sorted(got) == sorted(want)  # the string tensor is skipped
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    entries = read_index(FIXTURES / "tiny_ckpt.index")
    assert entries["strings"].dtype == 7 and entries["strings"].shape == (2,)
    assert entries["conv/kernel"].shape == (2, 3, 1, 4) and entries["conv/kernel"].size == 96
    with pytest.raises(CheckpointFormatError, match="unsupported TensorFlow dtype"):
        load_checkpoint(FIXTURES / "tiny_ckpt", skip_strings=False)


def test_reader_index_uses_restarts_and_prefix_compression():
    table = (FIXTURES / "tiny_ckpt.index").read_bytes()
    footer = table[-48:]
    assert struct.unpack("<Q", footer[40:])[0] == TABLE_MAGIC
    block = _first_data_block(table)
    keys = [k for k, _ in iter_block(block)]
    assert keys == sorted(keys) and keys[0] == b"" and len(keys) == 30
    assert block.count(b"layer_") < 20  # keys after a restart point store only their new suffix
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    assert n_restarts == 2  # 30 keys, a restart every 16


def _first_data_block(table: bytes) -> bytes:
    from tf_checkpoint import _block_handle

    _, pos = _block_handle(table[-48:], 0)
    index_handle, _ = _block_handle(table[-48:], pos)
    _, handle_bytes = next(iter_block(read_block(table, index_handle)))
    return read_block(table, _block_handle(handle_bytes, 0)[0])


def test_reader_detects_corrupt_data(tmp_path):
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(FIXTURES / f"tiny_ckpt{suffix}", tmp_path / f"ckpt{suffix}")
    data_path = tmp_path / "ckpt.data-00000-of-00001"
    offset = read_index(tmp_path / "ckpt")["conv/kernel"].offset
    data = bytearray(data_path.read_bytes())
    data[offset + 5] ^= 0x40
    data_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError, match="conv/kernel: CRC32C mismatch"):
        load_checkpoint(tmp_path / "ckpt")
    assert load_checkpoint(tmp_path / "ckpt", verify_crc=False)["conv/kernel"].shape == (2, 3, 1, 4)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing")


# A minimal SSTable writer (several data blocks, a restart every 2 keys), to reach the
# reader's multi-block path and its refusals, which TensorFlow's small files do not.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _block(entries, restart_every: int = 2) -> bytes:
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(prev), len(key)) and prev[shared] == key[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        prev = key
    out += b"".join(struct.pack("<I", r) for r in restarts or [0]) + struct.pack("<I", len(restarts or [0]))
    return bytes(out)


def _table(entries, per_block: int = 3, compression: int = 0, magic: int = TABLE_MAGIC) -> bytes:
    out, index = bytearray(), []

    def put(block: bytes) -> bytes:
        handle = _varint(len(out)) + _varint(len(block))
        trailer = bytes([compression])
        out.extend(block + trailer + struct.pack("<I", masked_crc32c(block + trailer)))
        return handle

    for i in range(0, len(entries), per_block):
        chunk = entries[i: i + per_block]
        index.append((chunk[-1][0], put(_block(chunk))))
    meta_handle = put(_block([]))
    index_handle = put(_block(index, 1))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", magic)
    return bytes(out) + footer


def _entry(dtype: int, shape, offset: int, raw: bytes) -> bytes:
    dims = b"".join(b"\x12" + _varint(len(d)) + d for d in (b"\x08" + _varint(n) for n in shape))
    return (b"\x08" + _varint(dtype) + b"\x12" + _varint(len(dims)) + dims + b"\x20" + _varint(offset)
            + b"\x28" + _varint(len(raw)) + b"\x35" + struct.pack("<I", masked_crc32c(raw)))


def _write_bundle(prefix: Path, tensors: dict, **table_options) -> None:
    data, entries = bytearray(), [(b"", b"\x08\x01")]
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).tobytes()
        entries.append((name.encode(), _entry({np.float32: 1, np.int64: 9}[tensors[name].dtype.type],
                                              tensors[name].shape, len(data), raw)))
        data += raw
    Path(f"{prefix}.index").write_bytes(_table(entries, **table_options))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


def test_reader_multi_block_table_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"scope_{i // 3}/var_{i}": rng.standard_normal((i % 4 + 1, 2)).astype(np.float32) for i in range(11)}
    tensors["scope_9/step"] = np.array([7], np.int64)
    _write_bundle(tmp_path / "multi", tensors)
    got = load_checkpoint(tmp_path / "multi")
    assert sorted(got) == sorted(tensors)
    for name, value in tensors.items():
        np.testing.assert_array_equal(got[name], value)
    _write_bundle(tmp_path / "snappy", tensors, compression=1)
    with pytest.raises(CheckpointFormatError, match="snappy"):
        read_index(tmp_path / "snappy")
    _write_bundle(tmp_path / "magic", tensors, magic=0x1234)
    with pytest.raises(CheckpointFormatError, match="magic"):
        read_index(tmp_path / "magic")
    index = bytearray((tmp_path / "multi.index").read_bytes())
    index[10] ^= 0xFF
    (tmp_path / "multi.index").write_bytes(bytes(index))
    with pytest.raises(CheckpointFormatError, match="CRC"):
        read_index(tmp_path / "multi")


# --- shipped weights and conversion ------------------------------------------------

def test_shipped_weights_load_with_tags_and_licence(models):
    mtt, msd = models["MTT_musicnn"], models["MSD_musicnn"]
    assert mtt.tags[:3] == ["guitar", "classical", "slow"] and len(mtt.tags) == 50
    assert msd.tags[:3] == ["rock", "pop", "alternative"] and len(msd.tags) == 50
    assert not torch.equal(mtt.backend.output.weight, msd.backend.output.weight)
    bn = mtt.frontend.input_bn
    assert bn.eps == 1e-3 and float(bn.running_var) > 0
    licence = (musicnn.WEIGHTS_DIR / "MUSICNN_LICENSE.txt").read_text()
    assert "Permission to use, copy, modify, and/or distribute this software" in licence
    assert "musicnn==0.1.0" in licence and licence.count("sha256 ") == 7
    assert musicnn.canonical_name("musicnn-msd") == "MSD_musicnn"
    with pytest.raises(ConfigError):
        load_musicnn("MSD_vgg")


def _wheel(tmp_path: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--retries", "0", "--timeout", "15",
           "musicnn==0.1.0", "-d", str(tmp_path)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except (subprocess.SubprocessError, OSError):
        pytest.skip("pip download musicnn==0.1.0 impossible here (offline?)")
    return tmp_path / "musicnn-0.1.0-py3-none-any.whl"


def test_converter_reproduces_shipped_files_byte_for_byte(tmp_path):
    wheel = _wheel(tmp_path)
    spec = importlib.util.spec_from_file_location("convert_musicnn", REPO / "tools" / "convert_musicnn.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    files = tool.convert(wheel, tmp_path, tool.shipped_date(musicnn.WEIGHTS_DIR))
    assert sorted(files) == sorted(["MSD_musicnn.safetensors", "MTT_musicnn.safetensors", "MSD_musicnn.tags.txt",
                                    "MTT_musicnn.tags.txt", "MUSICNN_LICENSE.txt"])
    for name, data in files.items():
        assert (musicnn.WEIGHTS_DIR / name).read_bytes() == data, name


# --- the network -------------------------------------------------------------------

def test_forward_shapes_and_input_checks():
    model = MusiCNN().eval()
    x = torch.randn(2, 96, 187)
    with torch.no_grad():
        assert torch.equal(model(x), model(x.unsqueeze(1)))
        assert model(torch.randn(1, 96, 60)).shape == (1, 50)  # musicnn takes any length
        assert model.embed(x, "pool").shape == (2, 1506)
        assert model.embed(x, "max_pool").shape == (2, 753)
    with pytest.raises(ValueError, match="96 mel bands"):
        model(torch.randn(2, 128, 187))
    with pytest.raises(ValueError, match="layer"):
        model.embed(x, "cnn9")


def test_musicnn_features_match_musicnn_preprocessing(shared_data):
    """genrekit's MUSICNN_FEATURES gives musicnn's float16 input up to float16 rounding.

    Frame 0 of patch 0 depends on the reflect padding (zero padding is off by ~1).
    """
    assert MUSICNN_FEATURES.segment_shape == (96, 187) and MUSICNN_FEATURES.segment_hop_frames == 187
    for clip in CLIPS[:2]:
        ref = reference(clip)
        y = _audio(shared_data, ref)
        mine = np.asarray(waveform_segments(y, MUSICNN_FEATURES))[ref["patch_index"]]
        theirs = ref["patches"].astype(np.float32).transpose(0, 2, 1)
        assert np.abs(mine - theirs).max() < 4e-3, clip


@pytest.mark.parametrize("clip", CLIPS)
def test_parity_on_musicnn_input_patches(models, clip):
    """(a) The model alone: musicnn's exact input patches, TensorFlow's outputs."""
    ref = reference(clip)
    x = torch.from_numpy(ref["patches"].astype(np.float32)).transpose(1, 2)
    keep = ref["patch_index"]
    for name, model in models.items():
        with torch.no_grad():
            probs = model.predict(x).numpy()
            penultimate = model.embed(x).numpy()
            max_pool, mean_pool = model.embed(x, "max_pool").numpy(), model.embed(x, "mean_pool").numpy()
        assert np.abs(probs - ref[f"taggram_{name}"][keep]).max() <= 1e-3, name
        np.testing.assert_allclose(penultimate, ref[f"penultimate_{name}"][keep], atol=1e-3)
        np.testing.assert_allclose(max_pool, ref[f"max_pool_{name}"], atol=1e-3, rtol=1e-4)
        np.testing.assert_allclose(mean_pool, ref[f"mean_pool_{name}"], atol=1e-3, rtol=1e-4)


def _audio(shared_data: Path, ref: dict) -> np.ndarray:
    from genrekit.audio import load_audio

    return load_audio(shared_data / str(ref["clip"]), sr=16000) * np.float32(ref["gain"])


E2E_PATCHES = 4  # compare the first 4 patches of each clip, to keep the test quick


def _first_patches(y: np.ndarray, n: int) -> np.ndarray:
    """The start of ``y`` that gives exactly ``n`` patches whose frames need no end padding."""
    cfg = MUSICNN_FEATURES
    return y[: n * cfg.segment_hop_frames * cfg.hop_length + cfg.n_fft]


@pytest.mark.parametrize("clip", CLIPS)
def test_parity_end_to_end_from_audio(shared_data, models, clip):
    """(b) Audio file -> genrekit features -> port, against musicnn.extractor's taggram.

    16 kHz clips: max |diff| <= 1e-3 (measured <= 3e-4, from musicnn's float16 log-mel).
    The 22.05 kHz clip matches musicnn run with librosa >= 0.10's soxr resampler to
    1e-3; against the 2019 kaiser_best resampler the top mel bands differ, so the
    tolerance there is 0.03 (measured 0.015) with the top 3 tags equal.
    """
    ref = reference(clip)
    y = _first_patches(_audio(shared_data, ref), E2E_PATCHES)
    for name, model in models.items():
        probs, _ = taggram(y, model=model, sr=16000)
        assert probs.shape == (E2E_PATCHES, 50)
        resampled = f"taggram_soxr_{name}" in ref
        exact = (ref[f"taggram_soxr_{name}"] if resampled else ref[f"taggram_{name}"])[:E2E_PATCHES]
        assert np.abs(probs - exact).max() <= 1e-3, name
        assert set(top(probs, 5)) == set(top(exact, 5)), name
        if resampled:
            kaiser = ref[f"taggram_{name}"][:E2E_PATCHES]
            assert np.abs(probs - kaiser).max() <= 0.03, name
            assert top(probs, 3) == top(kaiser, 3), name


def test_no_nan_on_loud_input(models):
    y = square_wave(3.5)
    patches = torch.as_tensor(waveform_segments(y, MUSICNN_FEATURES))
    mel = (10.0 ** patches.double() - 1) / 10000
    assert float(mel.max()) > 65504 / 10000  # musicnn's float16 10000 * mel would overflow here
    for amplitude in (1.0, 100.0):
        for name, model in models.items():
            probs, _ = taggram(amplitude * y, model=model, sr=16000)
            assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all(), (name, amplitude)
    ref = reference("metal.00051")  # musicnn itself on the clip at its own level: input overflow
    assert ref["unscaled_input_inf_fraction"] > 0


# --- backbones ---------------------------------------------------------------------

def test_backbones_registered_and_trainable(models):
    for name in ("musicnn-msd", "musicnn-mtt"):
        spec = get_backbone(name)
        assert spec.feature_config == MUSICNN_FEATURES and spec.pretrained_source == "shipped"
        assert getattr(spec, "standardise_input", False) is False  # musicnn normalises its own input
    backbone = get_backbone("musicnn-mtt").build(pretrained=True, weights=None).eval()
    x = torch.randn(2, 1, 96, 187) + 2
    with torch.no_grad():
        fmap = backbone(x)
        assert fmap.shape == (2, backbone.num_features, 1, 187) and backbone.num_features == 753
        np.testing.assert_allclose(fmap.amax(dim=(2, 3)), models["MTT_musicnn"].embed(x, "max_pool"), atol=1e-5)
    model = build_model(ModelConfig(backbone="musicnn-msd", n_classes=10), pretrained=True).train()
    out = model(torch.randn(4, 96, 187) + 2)
    assert out.shape == (4, 10)
    out.square().mean().backward()
    grad = model.backbone.frontend.timbral[0].conv.weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    with pytest.raises(ConfigError):
        get_backbone("musicnn-msd").build(pretrained=False, weights="/nonexistent.safetensors")


def test_missing_weights_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(musicnn, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="convert_musicnn"):
        load_musicnn("MTT_musicnn")


def test_front_end_eval_shortcut_equals_batch_norm_before_the_max():
    # eval: ReLU and BN are applied after the max over frequencies (min where BN's scale < 0)
    torch.manual_seed(0)
    block = musicnn.FrontEndBlock(16, (7, 38), (3, 3)).eval()
    with torch.no_grad():
        block.bn.weight.normal_()
        block.bn.bias.normal_()
        block.bn.running_mean.normal_()
        block.bn.running_var.uniform_(0.5, 2.0)
    assert (block.bn.weight < 0).any() and (block.bn.weight > 0).any()
    x = torch.randn(3, 1, 187, 96)
    with torch.no_grad():
        z = block.conv(torch.nn.functional.pad(x, (0, 0, 3, 3)))
        reference = block.bn(torch.relu(z)).amax(dim=3)
        assert torch.allclose(block(x), reference, atol=1e-6, rtol=0)
        block.train()  # training: batch statistics of the whole map, the plain order
        assert block(x).shape == reference.shape
