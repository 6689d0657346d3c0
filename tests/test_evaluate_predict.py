"""Evaluation metrics, voting, the leakage guard, prediction on real files, ONNX export."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from genrekit.errors import ConfigError, LeakageError
from genrekit.evaluation import evaluate, write_report
from genrekit.voting import majority_vote, mean_vote

# ---------------------------------------------------------------- voting


def test_mean_and_majority_vote_on_crafted_segments():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55],   # track 0: mean says a, majority says b
                      [0.2, 0.8], [0.3, 0.7]])                   # track 1: b either way
    track = np.array([0, 0, 0, 1, 1])
    assert mean_vote(probs, track, 2).argmax(1).tolist() == [0, 1]
    assert majority_vote(probs, track, 2).argmax(1).tolist() == [1, 1]
    assert mean_vote(probs, track, 2)[0] == pytest.approx([1.75 / 3, 1.25 / 3])
    # a 1-1 tie is broken by the mean probability
    tie = majority_vote(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([0, 0]), 1)
    assert tie.argmax(1).tolist() == [0]


# ---------------------------------------------------------------- evaluate


def test_leakage_guard_refuses_training_tracks(tiny_checkpoint, tiny_cache):
    with pytest.raises(LeakageError, match="training data"):
        evaluate(tiny_checkpoint, str(tiny_cache), split="train", n_boot=50)
    report = evaluate(tiny_checkpoint, str(tiny_cache), split="train", allow_leak=True, n_boot=50)
    assert report["leaky"] and report["leakage_problems"]


def test_leakage_guard_refuses_shared_artists(tiny_checkpoint, tiny_cache, monkeypatch):
    import genrekit.prediction as prediction

    real = prediction.load_model

    def with_artist(*args, **kwargs):
        model = real(*args, **kwargs)
        model.payload["training_data"]["train_artists"] = ["Artist X"]
        return model

    monkeypatch.setattr("genrekit.prediction.load_model", with_artist)
    import genrekit.cache.reader as reader

    original = reader._track_table

    def artist_tracks(records):
        tracks = original(records)
        tracks["artist"] = "Artist X"
        return tracks

    monkeypatch.setattr(reader, "_track_table", artist_tracks)
    with pytest.raises(LeakageError, match="artist"):
        evaluate(tiny_checkpoint, str(tiny_cache), split="valid", n_boot=50)


def test_evaluate_report_keys_files_and_consistency(tiny_checkpoint, tiny_cache, tmp_path):
    report = evaluate(tiny_checkpoint, str(tiny_cache), split="valid", n_boot=200)
    for key in ("balanced_accuracy", "balanced_accuracy_ci", "macro_f1", "macro_f1_ci", "track_accuracy",
                "track_accuracy_ci", "segment_accuracy", "per_class", "n_tracks", "calibration"):
        assert key in report
    assert report["n_tracks"] == 4 and report["n_segments"] == 40 and not report["leaky"]
    assert report["model_selection_overlap"] == 4  # the valid split chose the epoch: the report says so
    correct = [p["label"] == p["predicted"] for p in report["predictions"]]
    assert report["track_accuracy"] == pytest.approx(np.mean(correct))
    recalls = [np.mean([p["label"] == p["predicted"] for p in report["predictions"] if p["label"] == g])
               for g in {p["label"] for p in report["predictions"]}]
    assert report["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    for key in ("track_accuracy", "balanced_accuracy", "macro_f1"):
        lo, hi = report[f"{key}_ci"]
        assert lo <= report[key] <= hi
    files = write_report(report, tmp_path)
    assert "| genre | support | predicted | precision | recall | F1 |" in (tmp_path / "report.md").read_text()
    for key in ("json", "markdown", "confusion_counts", "confusion_normalised", "reliability"):
        assert (tmp_path / files[key].split("/")[-1]).stat().st_size > 0
    assert json.loads((tmp_path / "report.json").read_text())["n_tracks"] == 4


def test_cli_evaluate_json(tiny_checkpoint, tiny_cache, capsys):
    from genrekit.cli import main

    assert main(["evaluate", str(tiny_checkpoint), str(tiny_cache), "--split", "valid", "--format", "json",
                 "--bootstrap", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_tracks"] == 4 and 0 <= report["track_accuracy"] <= 1
    assert main(["evaluate", str(tiny_checkpoint), str(tiny_cache), "--split", "train"]) == 1  # leakage refused


# ---------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint):
    from genrekit.prediction import load_model

    return load_model(tiny_checkpoint)


def test_predict_real_files_in_each_format(classifier, fma_mp3, gtzan_wav, tmp_path):
    y, sr = sf.read(gtzan_wav, dtype="float32")
    flac, ogg = tmp_path / "clip.flac", tmp_path / "clip.ogg"
    sf.write(flac, y, sr)
    sf.write(ogg, y, sr, format="OGG", subtype="VORBIS")
    wav_result = classifier.predict_file(gtzan_wav)
    for path in (fma_mp3, gtzan_wav, flac, ogg):
        result = classifier.predict_file(path)
        assert result.genre in classifier.labels
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert len(result.segments) == 10 and sum(result.votes().values()) == 10
    # lossless FLAC gives the WAV's answer
    assert classifier.predict_file(flac).probabilities == pytest.approx(wav_result.probabilities, abs=1e-5)


def test_predict_long_file_windows_over_all_of_it(classifier, write_wav):
    from tests.conftest import tone

    rng = np.random.default_rng(0)
    freqs = (220, 440, 880, 330, 660, 550, 990, 110, 770, 1100)
    y = np.concatenate([tone(60, freq=f) + 0.05 * rng.standard_normal(60 * 22050).astype(np.float32) for f in freqs])
    path = write_wav("ten_minutes.wav", y)
    result = classifier.predict_file(path)
    assert len(result.segments) == 200 and result.duration == pytest.approx(600, abs=0.1)
    assert 597 < result.segments[-1]["end"] <= 600  # segments of 129 frames = 2.995 s; the short tail is dropped
    capped = classifier.predict_file(path, max_duration=60)
    assert len(capped.segments) == 20


def test_predict_folder_with_a_corrupt_file_goes_on_and_fails(tiny_checkpoint, fma_mp3, gtzan_wav, tmp_path, capsys):
    import shutil

    from genrekit.cli import main

    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(fma_mp3, folder / "good.mp3")
    shutil.copy(gtzan_wav, folder / "sub" / "good.wav")
    (folder / "broken.mp3").write_bytes(fma_mp3.read_bytes()[:1500] + b"\x00garbage" * 200)
    (folder / "notes.txt").write_text("not audio, and not an audio extension: ignored")
    status = main(["predict", str(folder), "--model", str(tiny_checkpoint), "--format", "json", "--quiet"])
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert status == 1
    assert len(results) == 3
    by_name = {r["path"].split("/")[-1]: r for r in results}
    assert "error" in by_name["broken.mp3"] and "genre" not in by_name["broken.mp3"]
    for name in ("good.mp3", "good.wav"):
        r = by_name[name]
        assert set(r) >= {"path", "genre", "probabilities", "segments"} and r["genre"] in r["probabilities"]
    assert "broken.mp3" in captured.err and "1 of 3" in captured.err


def test_predict_bad_inputs_are_reported(classifier, write_wav, tmp_path):
    from genrekit.errors import AudioError, SilentAudioError, TooShortError

    with pytest.raises(SilentAudioError):
        classifier.predict_file(write_wav("silence.wav", np.zeros(22050 * 5, np.float32)))
    with pytest.raises(TooShortError):
        classifier.predict_file(write_wav("short.wav", np.full(5000, 0.1, np.float32)))
    text = tmp_path / "text.mp3"
    text.write_text("hello")
    with pytest.raises(AudioError, match="text.mp3"):
        classifier.predict_file(text)


def test_python_api_predict_and_reuse(tiny_checkpoint, fma_mp3, gtzan_wav):
    import genrekit

    model = genrekit.load_model(tiny_checkpoint)
    one = genrekit.predict(str(fma_mp3), model=model)
    many = genrekit.predict([fma_mp3, gtzan_wav], model=model)
    assert one.genre == many[0].genre and len(many) == 2
    assert one.to_dict()["probabilities"][one.genre] == pytest.approx(one.confidence, abs=1e-6)


def test_onnx_export_agrees_with_torch(tiny_checkpoint, fma_mp3, tmp_path):
    from genrekit.cli import main
    from genrekit.prediction import load_model

    onnx_path = tmp_path / "model.onnx"
    assert main(["export", str(tiny_checkpoint), "--format", "onnx", "--out", str(onnx_path)]) == 0
    torch_model, onnx_model = load_model(tiny_checkpoint, runtime="torch"), load_model(onnx_path)
    assert onnx_model.labels == torch_model.labels and onnx_model.runtime == "onnx"
    assert torch_model.runtime == "torch"
    a = torch_model.segment_outputs(fma_mp3)[0]["probabilities"]
    b = onnx_model.segment_outputs(fma_mp3)[0]["probabilities"]
    assert np.abs(a - b).max() <= 1e-4
    auto = load_model(tiny_checkpoint)
    assert auto.runtime == "onnx"  # a checkpoint on CPU is exported in memory
    c = auto.segment_outputs(fma_mp3)[0]["probabilities"]
    assert np.abs(a - c).max() <= 1e-4
    with pytest.raises(ConfigError, match="runtime"):
        load_model(tiny_checkpoint, runtime="tensorflow")


def test_shipped_model_predicts_offline(fma_mp3, capsys):
    from genrekit.cli import main
    from genrekit.datasets import GTZAN_GENRES
    from genrekit.prediction import load_model
    from tests.conftest import has_shared_data

    model = load_model()
    assert model.labels == list(GTZAN_GENRES)
    card = model.card
    assert card["training_data"]["n_tracks"] > 0 and card["feature_config"]["sr"] > 0
    assert card["kind"] == "track_head" and card["abstention"]["detects_not_music"]
    assert card["networks"] == ["MSD_musicnn", "MTT_musicnn"]  # the backbones, and how often each runs
    assert card["patch_strides"] == card["recipe"]["head"]["patch_strides"] == {"MTT_musicnn": 2}
    assert main(["predict", str(fma_mp3), "--format", "json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    if has_shared_data():
        assert result["genre"] in GTZAN_GENRES
    else:  # the synthetic stand-in (tones and clicks) may rightly be called not music
        assert result["genre"] in GTZAN_GENRES or (result["genre"] is None and result["abstain"] == "not_music")


def test_shipped_model_does_not_hear_the_volume(gtzan_wav, tmp_path):
    """The same music 12 dB softer gets the same genre and nearly the same probabilities: the
    shipped model brings each 3 s segment to one level before musicnn (features.segment_rms_db).
    Without it, DEV tracks 20 dB softer changed genre or were called not music."""
    import soundfile as sf

    from genrekit.prediction import load_model

    model = load_model()
    assert model.feature_config.segment_rms_db is not None
    y, sr = sf.read(gtzan_wav, dtype="float32")
    soft = tmp_path / "soft.wav"
    sf.write(soft, y * 10 ** (-12 / 20), sr, subtype="FLOAT")
    loud, quiet = model.predict_file(gtzan_wav), model.predict_file(soft)
    assert (quiet.genre, quiet.abstain) == (loud.genre, loud.abstain)
    assert max(abs(loud.probabilities[g] - quiet.probabilities[g]) for g in model.labels) < 0.02


# ---------------------------------------------------------------- leakage by content, failures


def _manifest(path, rows):
    path.write_text("path,label,split\n" + "".join(f"{p},{label},test\n" for p, label in rows))
    return path


def test_training_audio_under_another_name_is_refused(tiny_checkpoint, tiny_cache, tmp_path, capsys):
    """The shipped model's own training files, listed by path with split test and no track id, were scored 0.958."""
    import shutil

    from genrekit.cache import FeatureCache
    from genrekit.cli import main

    trained = FeatureCache(tiny_cache).select("train").iloc[0]
    copy = tmp_path / "renamed_copy.wav"
    shutil.copy(trained.path, copy)
    manifest = _manifest(tmp_path / "m.csv", [(copy, trained.label)])
    with pytest.raises(LeakageError, match="same content hash"):
        evaluate(tiny_checkpoint, f"manifest:{manifest}", split="test", n_boot=20)
    assert main(["evaluate", str(tiny_checkpoint), f"manifest:{manifest}"]) == 1
    assert "same content hash" in capsys.readouterr().err


def test_tracks_that_fail_are_named_and_fail_the_command(tiny_checkpoint, gtzan_wav, tmp_path, capsys):
    from genrekit.cli import main

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    manifest = _manifest(tmp_path / "m.csv", [(gtzan_wav, "rock"), (broken, "rock"), (empty, "hiphop")])
    report = evaluate(tiny_checkpoint, f"manifest:{manifest}", n_boot=20)
    assert report["n_tracks"] == 1 and sorted(f["path"] for f in report["failures"]) == sorted([str(broken), str(empty)])
    assert main(["evaluate", str(tiny_checkpoint), f"manifest:{manifest}"]) == 1
    captured = capsys.readouterr()
    assert "FAILED: 2 track(s)" in captured.out and str(broken) in captured.out and "--allow-failures" in captured.err
    assert main(["evaluate", str(tiny_checkpoint), f"manifest:{manifest}", "--allow-failures"]) == 0


def test_evaluate_on_a_missing_path_says_so(tiny_checkpoint, tmp_path, capsys):
    from genrekit.cli import main

    assert main(["evaluate", str(tiny_checkpoint), str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_python_api_refuses_bytes_and_none(tiny_checkpoint):
    import genrekit

    model = genrekit.load_model(tiny_checkpoint)
    for bad in (b"song.mp3", None, 3):
        with pytest.raises(ConfigError, match="paths must be"):
            genrekit.predict(bad, model=model)
    with pytest.raises(ConfigError, match="model must be a path"):
        genrekit.load_model(42)


# ---------------------------------------------------------------- the shipped model on an FMA data set spec


@pytest.fixture
def fma_fixture(tmp_path):
    """``fma:AUDIO_DIR`` and a label CSV: two synthetic 7 s MP3s the shipped model never saw (Hip-Hop and Rock,
    as FMA writes its genres) and one of a genre it does not have (Folk)."""
    from tests.conftest import synthetic_track

    audio = tmp_path / "fma_small"
    rows = [(990001, "Hip-Hop", "hiphop"), (990002, "Rock", "rock"), (990003, "Folk", "rock")]
    for track_id, _, sound in rows:
        path = audio / f"{track_id:06d}"[:3] / f"{track_id:06d}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, synthetic_track(sound, track_id, 7.0, 22050), 22050, format="MP3")
    labels = tmp_path / "labels.csv"
    labels.write_text("track_id,genre_top,split\n" + "".join(f"{t},{g},test\n" for t, g, _ in rows))
    return audio, labels


def test_shipped_model_evaluates_an_fma_spec_with_metadata(fma_fixture, tmp_path, capsys):
    from genrekit.cli import main

    audio, labels = fma_fixture
    args = ["evaluate", "genrekit/weights/genrekit-gtzan.onnx", f"fma:{audio}", "--metadata", str(labels),
            "--split", "all", "--bootstrap", "20"]
    assert main(args) == 1  # Folk is no genre of the model's: refused, and the way out is named
    err = capsys.readouterr().err
    assert "Folk (1)" in err and "--only-model-labels" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--only-model-labels", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_tracks"] == 2 and not report["leaky"]
    assert sorted(p["label"] for p in report["predictions"]) == ["hiphop", "rock"]  # FMA's Hip-Hop is hiphop
    assert report["notes"] == ["1 track(s) left out, their labels are not the model's: Folk (1)"]


def test_evaluate_help_lists_the_data_set_specs(capsys):
    from genrekit.cli import main

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "gtzan:ROOT, fma:AUDIO_DIR (with --metadata), folder:ROOT or manifest:CSV" in out and "--metadata" in out


def test_shipped_model_on_its_own_fma_training_clips_is_refused_clearly(shared_data, capsys):
    from genrekit.cli import main

    assert main(["evaluate", "genrekit/weights/genrekit-gtzan.onnx", f"fma:{shared_data / 'fma_small'}",
                 "--metadata", str(shared_data / "fma_metadata" / "labels.csv"), "--split", "all",
                 "--only-model-labels"]) == 1
    err = capsys.readouterr().err
    assert "the model was trained on these tracks" in err and "--allow-leak" in err
    assert len(err.strip().splitlines()) == 1


def test_precision_of_a_genre_never_predicted_is_undefined_not_zero():
    from genrekit.evaluation import _report, format_table, to_json

    y, pred = np.array([0, 0, 1, 1, 3]), np.array([0, 0, 0, 1, 0])  # jazz: never true nor predicted; rock: not predicted
    probs = np.eye(4)[pred] * 0.8 + 0.05
    scored = {"y": y, "mean": pred, "majority": pred, "probs": probs, "raw_probs": probs, "seg_true": y,
              "seg_pred": pred, "abstain": [None] * 5}
    report = _report(scored, ["blues", "disco", "jazz", "rock"], n_boot=20, seed=0)
    report.update(split="test", leaky=False, model_selection_overlap=0, failures=[])
    assert report["per_class"]["disco"]["precision"] == 1.0
    assert report["per_class"]["jazz"]["precision"] is None and report["per_class"]["jazz"]["f1"] is None
    assert report["per_class"]["rock"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert json.loads(to_json(report))["per_class"]["rock"]["precision"] is None
    rows = {line.split()[0]: line.split() for line in format_table(report).splitlines() if line.startswith(("j", "r"))}
    assert rows["jazz"] == ["jazz", "–", "–", "–", "0", "0"]
    assert rows["rock"] == ["rock", "–", "0.000", "0.000", "1", "0"]


def test_all_silent_audio_is_a_not_music_answer_and_cancelling_channels_a_failure(tmp_path):
    from genrekit.prediction import Failure, load_model

    sf.write(tmp_path / "silent.wav", np.zeros(3 * 22050, np.float32), 22050)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * 22050) / 22050).astype(np.float32)
    sf.write(tmp_path / "cancel.wav", np.stack([tone, -tone], axis=1), 22050, subtype="FLOAT")
    silent, cancel = load_model().predict_files([tmp_path / "silent.wav", tmp_path / "cancel.wav"])
    assert isinstance(silent, Failure) and silent.abstain == "not_music"
    answer = silent.to_dict()
    assert (answer["path"], answer["genre"], answer["abstain"], answer["reason"]) == \
        (str(tmp_path / "silent.wav"), None, "not_music", "audio is all silent")
    assert answer["probabilities"] == {} and answer["segments"] == [] and answer["music_probability"] == 0.0
    assert isinstance(cancel, Failure) and cancel.abstain is None and "channels cancel" in cancel.error


def test_device_and_runtime_are_checked_not_ignored_for_an_onnx_model():
    from genrekit.prediction import load_model

    with pytest.raises(ConfigError, match="device must be cpu or cuda"):
        load_model(device="gpu")
    for kwargs in ({"device": "cuda"}, {"runtime": "torch"}):
        with pytest.raises(ConfigError, match=r"genrekit-gtzan.onnx: an .onnx model runs with onnxruntime on the CPU"):
            load_model(**kwargs)
    assert load_model(runtime="onnx").runtime == "onnx"


def test_a_folder_path_id_alone_is_no_leak_where_content_hashes_can_tell():
    """``rock/01.mp3`` in another folder is another recording unless its hash matches; a data set's
    own ids (GTZAN's country.00008) still count, and path ids do where the model has no hashes."""
    import pandas as pd

    from genrekit.evaluation import leakage_check

    def rows(*items):
        return pd.DataFrame([{"track_id": i, "artist": None, "path": f"/t/{i}", "sha256": h, "audio_sha256": None}
                             for i, h in items])

    model = {"training_data": {"train_track_ids": ["rock/01.mp3", "country.00008"], "train_hashes": ["h1"]}}
    assert leakage_check(model, rows(("rock/01.mp3", "h9"))) == []
    assert "same content hash" in " ".join(leakage_check(model, rows(("rock/01.mp3", "h1"))))
    assert "were in the training data" in " ".join(leakage_check(model, rows(("country.00008", "h9"))))
    no_hashes = {"training_data": {"train_track_ids": ["rock/01.mp3"]}}
    assert "were in the training data" in " ".join(leakage_check(no_hashes, rows(("rock/01.mp3", "h9"))))
