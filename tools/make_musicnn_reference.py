#!/usr/bin/env python
"""Reference outputs of the original TensorFlow musicnn, for genrekit's parity tests.

Run this ONCE in a throw-away virtual environment outside the repository, never in
genrekit's own (TensorFlow is not a genrekit dependency)::

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install "tensorflow-cpu==2.21.*" tf-keras librosa soundfile resampy
    /tmp/tfvenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfvenv/bin/python tools/make_musicnn_reference.py --data /work/shared/data
    /tmp/tfvenv/bin/python tools/make_musicnn_reference.py --tiny-checkpoint

For every clip it writes ``tests/fixtures/musicnn/<clip>.npz`` with, for both
``MTT_musicnn`` and ``MSD_musicnn``: the whole taggram of ``musicnn.extractor`` (sigmoid
tag probabilities of every 3 s patch, musicnn's default non-overlapping patches), the
penultimate embeddings of every patch, and, for a few patches only, musicnn's exact
input (its float16 log-mel patch) with the max/mean pool features of those patches.
For a clip that is not at 16 kHz it also stores the taggram with librosa >= 0.10's
default resampler (``taggram_soxr_*``), and for every clip what musicnn makes of it at
its own level (``unscaled_input_inf_fraction``, ``unscaled_taggram_MTT_musicnn``).

Two deviations from running ``musicnn.extractor.extractor`` as is, both recorded in
each file:

* **Loud input is scaled down** by a power of two (exact in floating point). musicnn
  computes ``log10(10000 mel + 1)`` in float16, which overflows to ``inf`` once a mel
  value passes 6.55 (most commercial music does); the tags are then meaningless (with
  TensorFlow 2.21: the same values for every patch of every such input; NaN elsewhere). The gain keeps
  ``10000 max(mel)`` below 2**15 and the same gain is applied to genrekit's input.
* **librosa 0.7 behaviour** (musicnn 0.1.0 asks for librosa >= 0.7, current at its release):
  ``melspectrogram`` pads with ``pad_mode='reflect'`` (librosa >= 0.10 pads with zeros)
  and ``librosa.load`` resamples with ``res_type='kaiser_best'`` (resampy; librosa >=
  0.10 uses soxr_hq). ``--pad-mode``/``--res-type`` change this.

The embeddings come from musicnn's own graph run directly (see :func:`session_outputs`),
because ``extractor`` repeats the first patch's ``penultimate`` for every patch.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "musicnn"
CLIPS = (  # paths under the shared data folder; two 16 kHz clips (no resampling), one 22.05 kHz
    "gtzan_16k/classical/classical.00045.wav",
    "gtzan_16k/metal/metal.00051.wav",
    "gtzan/rock/rock.00001.wav",
)
MODELS = ("MTT_musicnn", "MSD_musicnn")
FLOAT16_LIMIT = 2.0 ** 15  # keep 10000 * mel below this (float16 overflows at 65504)
LIBROSA_OPTIONS = {"pad_mode": "reflect", "res_type": "kaiser_best"}


def patch_librosa() -> None:
    """Make musicnn's librosa calls use :data:`LIBROSA_OPTIONS` (read at call time)."""
    import librosa

    load, melspectrogram = librosa.load, librosa.feature.melspectrogram

    def patched_load(*args, **kwargs):
        return load(*args, res_type=LIBROSA_OPTIONS["res_type"], **kwargs)

    def patched_melspectrogram(*args, **kwargs):
        return melspectrogram(*args, pad_mode=LIBROSA_OPTIONS["pad_mode"], **kwargs)

    librosa.load, librosa.feature.melspectrogram = patched_load, patched_melspectrogram


def choose_gain(path: Path) -> float:
    """Largest power-of-two gain <= 1 that keeps musicnn's float16 log-mel finite."""
    import librosa
    from musicnn import configuration as config

    y, sr = librosa.load(str(path), sr=config.SR)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE,
                                         n_mels=config.N_MELS)
    gain = 1.0
    while 10000 * float(mel.max()) * gain**2 >= FLOAT16_LIMIT:
        gain /= 2
    return gain


def scaled_copy(path: Path, gain: float, folder: Path) -> Path:
    """The clip times ``gain`` as a float32 WAV at its own sample rate (lossless)."""
    import soundfile as sf

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    out = folder / (path.stem + ".f32.wav")
    sf.write(str(out), y * np.float32(gain), sr, subtype="FLOAT")
    return out


def session_outputs(patches: np.ndarray, model: str) -> dict[str, np.ndarray]:
    """Run musicnn's own graph (``models.define_model``, as ``extractor`` builds it) on patches.

    ``extractor`` returns the first patch's ``penultimate`` (and ``cnn1-3``) for every
    patch (its loop concatenates the first batch's variables), so the embeddings come
    from this session instead. Batch norm runs in inference mode, so a batch of all
    patches gives the same values as musicnn's one-patch batches.
    """
    import musicnn.extractor
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn import models

    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, patches.shape[1], config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        outputs = models.define_model(x, is_training, model, 50)
        probs = tf.nn.sigmoid(outputs[0])
    mean_pool, max_pool, penultimate = outputs[6], outputs[7], outputs[8]
    with tf.compat.v1.Session() as sess:
        tf.compat.v1.train.Saver().restore(sess, os.path.dirname(musicnn.extractor.__file__) + "/" + model + "/")
        values = sess.run([probs, penultimate, max_pool, mean_pool], feed_dict={x: patches, is_training: False})
    return dict(zip(["taggram", "penultimate", "max_pool", "mean_pool"], values))


def extractor_taggram(path: Path, model: str) -> np.ndarray:
    from musicnn.extractor import extractor

    taggram, _tags = extractor(str(path), model=model, extract_features=False)
    return np.asarray(taggram, np.float32)


def reference(path: Path, patches: np.ndarray, model: str, keep: list[int]) -> dict[str, np.ndarray]:
    """musicnn's taggram (``extractor``) and embeddings (its graph) of one clip for one model."""
    taggram = extractor_taggram(path, model)
    if not np.isfinite(taggram).all():
        raise RuntimeError(f"{path}: musicnn returned non-finite tags; lower the gain")
    session = session_outputs(patches.astype(np.float32), model)
    gap = float(np.abs(session["taggram"] - taggram).max())
    if gap > 1e-5:
        raise RuntimeError(f"{path}: session taggram differs from extractor's by {gap}")
    return {
        f"taggram_{model}": taggram,
        f"penultimate_{model}": session["penultimate"].astype(np.float32),
        f"max_pool_{model}": session["max_pool"][keep].astype(np.float32),
        f"mean_pool_{model}": session["mean_pool"][keep].astype(np.float32),
    }


def unscaled(path: Path) -> dict[str, np.ndarray]:
    """What musicnn (MTT) makes of the clip at its own level: input overflow and taggram."""
    from musicnn.extractor import batch_data

    patches, _ = batch_data(str(path), 187, 187)
    return {"unscaled_input_inf_fraction": np.array(np.isinf(patches).mean()),
            "unscaled_taggram_MTT_musicnn": extractor_taggram(path, "MTT_musicnn")}


def make_clip(data: Path, clip: str, keep: list[int], args) -> Path:
    import librosa
    import soundfile as sf
    import tensorflow as tf
    from musicnn import configuration as config
    from musicnn.extractor import batch_data

    source = data / clip
    gain = choose_gain(source)
    arrays = unscaled(source)
    with tempfile.TemporaryDirectory() as tmp:
        scaled = scaled_copy(source, gain, Path(tmp))
        patches, _ = batch_data(str(scaled), 187, 187)
        keep = [k for k in keep if k < len(patches)]
        arrays.update({"patches": patches[keep].astype(np.float16), "patch_index": np.array(keep)})
        for model in MODELS:
            arrays.update(reference(scaled, patches, model, keep))
        if sf.info(str(source)).samplerate != config.SR:  # the same with librosa >= 0.10's resampler
            LIBROSA_OPTIONS["res_type"] = "soxr_hq"
            for model in MODELS:
                arrays[f"taggram_soxr_{model}"] = extractor_taggram(scaled, model)
            LIBROSA_OPTIONS["res_type"] = args.res_type
    arrays.update({
        "clip": np.array(clip), "gain": np.array(gain, np.float64), "sr": np.array(config.SR),
        "pad_mode": np.array(args.pad_mode), "res_type": np.array(args.res_type),
        "versions": np.array(f"musicnn 0.1.0, tensorflow {tf.__version__}, librosa {librosa.__version__}"),
    })
    out = args.out / (Path(clip).stem + ".npz")
    np.savez_compressed(out, **arrays)
    return out


def tiny_checkpoint_tensors() -> dict[str, np.ndarray]:
    """The tensors of the reader's test checkpoint (tests/test_musicnn.py rebuilds them)."""
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
    for i in range(20):  # shared prefixes and more than 16 keys: several restart points
        tensors[f"layer_{i:02d}/weights"] = np.full((i + 1,), i, np.float32) - np.float32(0.5)
    return tensors


def write_tiny_checkpoint(prefix: Path) -> None:
    """Write ``tests/fixtures/musicnn/tiny_ckpt`` with TensorFlow's own SaveV2 op (and a string tensor)."""
    import tensorflow as tf

    tensors = tiny_checkpoint_tensors()
    names = list(tensors) + ["strings"]
    values = [tf.constant(v) for v in tensors.values()] + [tf.constant([b"a", b"bc"])]
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--clips", nargs="*", default=list(CLIPS))
    parser.add_argument("--keep", type=int, nargs="*", default=[0, 5], help="patches whose input is stored")
    parser.add_argument("--pad-mode", default="reflect")
    parser.add_argument("--res-type", default="kaiser_best")
    parser.add_argument("--tiny-checkpoint", action="store_true",
                        help="only write the reader's test checkpoint tests/fixtures/musicnn/tiny_ckpt.*")
    args = parser.parse_args(argv)
    if args.tiny_checkpoint:
        args.out.mkdir(parents=True, exist_ok=True)
        write_tiny_checkpoint(args.out / "tiny_ckpt")
        print(f"wrote {args.out / 'tiny_ckpt'}.index and .data-00000-of-00001")
        return 0
    LIBROSA_OPTIONS.update(pad_mode=args.pad_mode, res_type=args.res_type)
    patch_librosa()
    args.out.mkdir(parents=True, exist_ok=True)
    for clip in args.clips:
        out = make_clip(args.data, clip, args.keep, args)
        print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
