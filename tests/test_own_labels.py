"""A transfer recipe on a user's own labels (not genres musicnn's tags name): few tracks per label,
labels without tracks, a tag prior that cannot apply, and recipe values of the wrong kind."""
from __future__ import annotations

import numpy as np
import pytest

from genrekit.errors import ConfigError, DatasetError
from genrekit.training import transfer
from genrekit.training.transfer import LabeledTrack, TransferConfig, train_transfer

TAGS = "MSD_musicnn/tags"


@pytest.fixture
def own_folder(tmp_path):
    """calm/, groove/, noisy/ with 3 placeholder files each (the checks run before any audio is read)."""
    for label in ("calm", "groove", "noisy"):
        (tmp_path / "music" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "music" / label / f"{label}{i}.wav").write_bytes(b"")
    return tmp_path


def recipe(root, **changes) -> TransferConfig:
    settings = {"out": str(root / "m.onnx"), "features_cache": str(root / "cache"), "folds": 3,
                "labels": ["calm", "groove", "noisy"], "sources": [{"spec": f"folder:{root / 'music'}"}],
                "head": {"inputs": [TAGS], "prior": None, "C": [0.1, 1.0]}}
    return TransferConfig(**(settings | changes))


@pytest.fixture
def no_features(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the recipe should have been refused before reading any audio")

    monkeypatch.setattr(transfer, "extract_features", refuse)


@pytest.mark.parametrize("changes, message", [
    ({"labels": ["calm", "groove", "noisy", "ambient"]}, r"labels \['ambient'\] have no tracks"),
    ({"head": {"inputs": [TAGS], "prior": "msd_proxy_fill"}}, "head.prior msd_proxy_fill: .*name none of the labels"),
    ({"head": {"inputs": [TAGS], "prior": "msd"}}, "head.prior msd: .*map them to tags in head.prior_tags or set "
                                                    "head.prior: null"),
    ({"head": {"inputs": [TAGS], "prior": "msd", "prior_tags": {"jazzy": {"MSD_musicnn": ["jazz"]}}}},
     r"head.prior_tags names \['jazzy'\], which are not among the labels"),
    ({"display_names": {"calm": "Calm", "jazz": "Jazz"}}, r"display_names names \['jazz'\]"),
    ({"folds": 4}, "folds 4: too few CV tracks .*at most 3 tracks of a label"),
    ({"sources": [{"spec": "folder:MUSIC", "role": "train"}]}, "no CV tracks: at least one source needs role: cv"),
])
def test_a_recipe_its_labels_cannot_follow_is_refused_before_features(own_folder, no_features, changes, message):
    for source in changes.get("sources", []):
        source["spec"] = source["spec"].replace("MUSIC", str(own_folder / "music"))
    with pytest.raises((ConfigError, DatasetError), match=message):
        train_transfer(recipe(own_folder, **changes), progress=False)


def test_a_label_without_tracks_is_kept_when_prior_tags_map_it(own_folder, no_features):
    config = recipe(own_folder, labels=["calm", "groove", "noisy", "spacey"],
                    head={"inputs": [TAGS], "prior": "msd", "C": [0.1],
                          "prior_tags": {"spacey": {"MSD_musicnn": ["ambient"]}}})
    with pytest.raises(AssertionError, match="before reading any audio"):
        train_transfer(config, progress=False)
    config = recipe(own_folder, labels=["calm", "groove", "noisy", "spacey"],
                    head={"inputs": [TAGS], "prior": "msd", "prior_tags": {"calm": {"MSD_musicnn": ["chill"]}}})
    with pytest.raises(ConfigError, match=r"labels \['spacey'\] have no tracks"):
        train_transfer(config, progress=False)


def test_a_label_without_tracks_is_kept_when_the_prior_names_it(own_folder, no_features):
    # the shipped recipe's way: a genre musicnn's tags name can be zero-shot (here: refused only for lack of audio)
    config = recipe(own_folder, labels=["calm", "groove", "jazz", "noisy"],
                    head={"inputs": [TAGS], "prior": "msd", "C": [0.1]})
    with pytest.raises(AssertionError, match="before reading any audio"):
        train_transfer(config, progress=False)


@pytest.mark.parametrize("changes, message", [
    ({"head": {"C": 0.1}}, "head.C must be a list of positive numbers"),
    ({"head": {"prior_scale": 0}}, "head.prior_scale must be a positive number, not 0"),
    ({"head": {"prior_scale": "0.7"}}, "head.prior_scale must be a positive number, not '0.7'"),
    ({"head": {"prior_scale": True}}, "head.prior_scale must be a positive number, not True"),
    ({"head": {"prior": None, "prior_scale": 0.7}}, "head.prior_scale 0.7 scales the tag prior, and head.prior is null"),
    ({"folds": "three"}, "folds must be an integer >= 2, not 'three'"),
    ({"cv_repeats": 0}, "cv_repeats must be an integer >= 1, not 0"),
    ({"min_confidence": "0.2"}, "min_confidence must be in"),
    ({"labels": ["calm", "calm"]}, r"labels name a label twice: \['calm'\]"),
    ({"labels": "calm"}, "labels must be a list"),
    ({"head": {"inputs": ["MSD_musicnn/max_pool"]}}, "head.inputs: unknown input 'MSD_musicnn/max_pool'"),
    ({"head": {"inputs": "MSD_musicnn/tags"}}, "head.inputs must be a list"),
    ({"detector": {"C": [0.3]}}, r"detector.C must be a positive number, not \[0.3\]"),
    ({"detector": {"max_music_false_alarms": 2}}, "detector.max_music_false_alarms must be in"),
    ({"detector": {"inputs": ["MSD_musicnn/tag"]}}, "detector.inputs: unknown input"),
    ({"detector": {"music": "folder:x"}}, "detector.music must be a list of sources"),
    ({"detector": {"music": [{"spec": "folder:x", "role": "test"}]}}, "source role must be"),
    ({"sources": [{"spec": "folder:x", "splits": ["tset"]}]}, "source folder:x: splits: unknown split 'tset'"),
    ({"sources": [{"spec": "folder:x", "splits": "train"}]}, "source folder:x: splits must be a list"),
])
def test_recipe_values_of_the_wrong_kind_name_their_key(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        recipe(tmp_path, **changes)


def tracks_of(counts: dict[str, int]) -> list[LabeledTrack]:
    rng = np.random.default_rng(0)
    tracks = []
    for j, (label, n) in enumerate(counts.items()):
        for i in range(n):
            tags = np.clip(rng.normal(0.2, 0.05, size=(4, 50)), 0, 1)
            tags[:, j] += 0.5
            tracks.append(LabeledTrack(f"{label}/{i}", f"{label}/{i}.wav", label, None, "cv", "folder",
                                       {TAGS: tags.astype(np.float32)}))
    return tracks


def test_labels_with_one_or_two_tracks_get_fewer_inner_folds():
    # 12 tracks in 3 outer folds leave about 3 of the largest label to each inner CV: 4 inner folds cannot be
    # stratified (scikit-learn raised ValueError: n_splits=4 cannot be greater than the number of members ...)
    tracks = tracks_of({"calm": 5, "duo": 2, "noisy": 4, "sparkle": 1})
    labels = ["calm", "duo", "noisy", "sparkle"]
    spec = transfer.HeadSpec(inputs=[TAGS], prior=None, C=[0.1, 1.0])
    cv = transfer.cross_validate(spec, tracks, [], labels, n_folds=3, seed=0)
    assert cv["logits"].shape == (12, 4) and np.isfinite(cv["logits"]).all() and len(cv["C"]) == 3


def test_folds_beyond_the_artists_are_refused_with_the_counts():
    with pytest.raises(DatasetError, match="3 folds need 3 artists .* 2 artists"):
        transfer.group_folds(["a", "a", "a", "b"], ["x", "x", "y", "y"], 3, 0)


def test_train_prints_the_C_each_fold_chose(tmp_path, monkeypatch, capsys):
    from genrekit.cli import main

    report = {"balanced_accuracy": 0.9, "balanced_accuracy_ci": [0.8, 1.0], "macro_f1": 0.9, "accuracy": 0.9,
              "per_class": {"calm": {"recall": 1.0}, "noisy": {"recall": 0.8}}, "C_per_fold": [0.1, 0.3, 0.3],
              "calibration": {"ece_before": 0.1, "ece_after": 0.05},
              "repeated": {"splits": 2, "balanced_accuracy_mean": 0.85, "balanced_accuracy_sd": 0.05,
                           "balanced_accuracy_per_split": [0.9, 0.8], "macro_f1_mean": 0.8,
                           "per_class": {"calm": {"recall": 0.75}, "noisy": {"recall": 0.95}},
                           "C_chosen": {"0.1": 2, "0.3": 4}}}
    prior = {"genre_tags": {"calm": {"MSD_musicnn": ["chill", "Mellow"], "MTT_musicnn": ["soft", "chill"]}, "noisy": {}},
             "scale": 0.7}
    head = {"meta": {"C": 0.3, "genres_without_tracks": ["spacey"]}, "prior": prior}
    fake = transfer.TransferResult(tmp_path / "m.onnx", report, None, {"cv_metrics": {"cv_tracks": 9}, "head": head})
    monkeypatch.setattr(transfer, "train_transfer", lambda config, progress: fake)
    (tmp_path / "r.yaml").write_text(f"kind: transfer\nsources: [{{spec: 'folder:{tmp_path}'}}]\nfolds: 3\n"
                                     "head: {C: [0.1, 0.3]}\n")
    assert main(["train", "--config", str(tmp_path / "r.yaml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "CV (9 tracks, 3 artist-grouped folds, first of 2 fold splits): balanced accuracy 0.900" in out
    assert ("over 2 fold splits: balanced accuracy 0.850 (SD 0.050; 0.900 0.800), macro-F1 0.800; per-genre recall "
            "pooled: calm 0.75, noisy 0.95") in out
    assert "C chosen by inner CV in the 6 folds of 2 splits: 0.1 ×2, 0.3 ×4; the model's head: C 0.3 (from [0.1, 0.3])" \
        in out
    assert ("tag prior: calm ← chill/Mellow/soft; no tag for noisy (head.prior_tags can map one); "
            "log-odds times 0.7") in out
    assert "no tracks for spacey: the prior alone decides them, CV cannot score them" in out
    del report["repeated"]
    assert main(["train", "--config", str(tmp_path / "r.yaml"), "--quiet"]) == 0
    assert "C chosen by inner CV in each fold: 0.1, 0.3, 0.3; the model's head: C 0.3 (from [0.1, 0.3])" in \
        capsys.readouterr().out
    (tmp_path / "r.yaml").write_text(f"kind: transfer\nsources: [{{spec: 'folder:{tmp_path}'}}]\nfolds: 3\n"
                                     "head: {C: [0.3]}\n")
    assert main(["train", "--config", str(tmp_path / "r.yaml"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "C fixed by the recipe: 0.3\n" in out and "chosen by inner CV" not in out


def test_an_existing_model_file_is_replaced_only_with_overwrite(tmp_path, monkeypatch, capsys):
    from genrekit.cli import main

    calls = []
    monkeypatch.setattr(transfer, "train_transfer", lambda config, progress: calls.append(config) or 1 / 0)
    out = tmp_path / "mine.onnx"
    out.write_bytes(b"a model the user keeps")
    (tmp_path / "r.yaml").write_text(f"kind: transfer\nsources: [{{spec: 'folder:{tmp_path}'}}]\nout: {out}\n")
    assert main(["train", "--config", str(tmp_path / "r.yaml"), "--quiet"]) == 1
    assert "mine.onnx exists: give --overwrite" in capsys.readouterr().err and calls == []
    with pytest.raises(ZeroDivisionError):  # past the check: training starts
        main(["train", "--config", str(tmp_path / "r.yaml"), "--quiet", "--overwrite"])
    assert out.read_bytes() == b"a model the user keeps" and len(calls) == 1


def test_a_detector_section_with_only_its_data_gets_the_shipped_detector(tmp_path):
    """A user's recipe that names only its non-music clips gets the detector design CV chose for the
    shipped model (bench/detector_cv.py), not the weaker per-patch binary one."""
    from pathlib import Path

    import yaml

    recipe_file = Path(__file__).resolve().parents[1] / "configs" / "default_model.yaml"
    shipped = yaml.safe_load(recipe_file.read_text(encoding="utf-8"))["detector"]
    config = recipe(tmp_path, detector={"nonmusic": "manifest:clips.csv"})
    for key in ("classes", "pooling", "min_segments", "C", "max_music_false_alarms"):
        assert getattr(config.detector, key) == shipped[key], key
    assert config.detector_inputs() == shipped["inputs"] == ["MSD_musicnn/penultimate"]
    mtt_only = recipe(tmp_path, detector={"nonmusic": "manifest:clips.csv"},
                      head={"inputs": ["MTT_musicnn/tags"], "prior": None, "C": [0.1]})
    assert mtt_only.detector_inputs() == ["MTT_musicnn/penultimate"]
    strided = recipe(tmp_path, detector={"nonmusic": "manifest:clips.csv"},
                     head={"inputs": ["MSD_musicnn/tags"], "prior": "msd_fill", "C": [0.1],
                           "patch_strides": {"MTT_musicnn": 2}})
    assert strided.detector_inputs() == ["MSD_musicnn/penultimate"]


def test_a_sources_splits_may_use_fmas_names(tmp_path):
    # FMA's tracks.csv says "training" / "validation"; the tracks carry genrekit's names, so before this
    # a recipe with splits: [training] silently kept no track at all
    config = recipe(tmp_path, sources=[{"spec": "folder:x", "splits": ["training", "Validation", "test"]}])
    assert config.sources[0].splits == ["train", "valid", "test"]
