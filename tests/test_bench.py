"""The benchmark scripts that CI cannot time still have to run: a tiny CPU pass of each."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str):
    """``bench/<name>.py`` as module ``bench_<name>``, loaded once."""
    import importlib.util

    module_name = f"bench_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, REPO / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def _synthetic_tracks(n_per_genre=8, genres=("blues", "jazz", "rock"), role="cv", seed=0):
    """Tracks whose MSD embedding mean depends on the genre; two tracks per artist."""
    import numpy as np

    from genrekit.training.transfer import LabeledTrack

    rng = np.random.default_rng(seed)
    centres = {g: rng.normal(0, 1, 200) for g in genres}
    tracks = []
    for g in genres:
        for i in range(n_per_genre):
            n_seg = int(rng.integers(2, 5))
            features = {"MSD_musicnn/penultimate": centres[g] + rng.normal(0, 1, (n_seg, 200)),
                        "MSD_musicnn/tags": rng.uniform(0.01, 0.3, (n_seg, 50))}
            tracks.append(LabeledTrack(f"{role}.{g}.{i}", f"{g}{i}.wav", g, f"{role} {g} artist {i // 2}", role,
                                       "synthetic", {k: v.astype(np.float32) for k, v in features.items()}))
    return tracks


def test_transfer_cv_designs_use_the_library_recipe_and_its_feature_kinds():
    from genrekit.training import transfer

    bench = _bench("transfer_cv")
    names = [d.name for d in bench.DESIGNS]
    assert len(names) == len(set(names)) and bench.CHOSEN in names
    assert all(k.split("/")[1] in transfer.KINDS for d in bench.DESIGNS for k in d.inputs)
    nested = [d for d in bench.DESIGNS if d.C is None]
    assert nested and all(d.is_recipe for d in nested)  # nested designs run transfer.cross_validate as is
    assert set(bench.SKIPPED) == {d.name for d in bench.ALL_DESIGNS} - set(names)


def test_transfer_cv_exact_prior_keeps_only_tags_named_like_the_genre():
    bench = _bench("transfer_cv")
    full, exact = bench.make_prior("msd"), bench.make_prior("msd-exact")
    assert exact.genre_tags["rock"] == {"MSD_musicnn": ["rock"]}
    assert exact.genre_tags["hiphop"] == {"MSD_musicnn": ["Hip-Hop"]}
    for genre, per in exact.genre_tags.items():
        for network, tags in per.items():
            assert set(tags) <= set(full.genre_tags[genre][network])
    assert sum(map(len, (t for per in exact.genre_tags.values() for t in per.values()))) < \
        sum(map(len, (t for per in full.genre_tags.values() for t in per.values())))


def test_transfer_cv_cross_fitted_temperature_never_sees_its_own_fold():
    import numpy as np

    bench = _bench("transfer_cv")
    rng = np.random.default_rng(0)
    y, fold = rng.integers(0, 10, 60), np.repeat(np.arange(3), 20)
    logits = rng.normal(0, 3, (60, 10))
    before = bench.cross_fitted_temperature(logits, y, fold)
    changed = logits.copy()
    changed[fold == 1] *= 10
    after = bench.cross_fitted_temperature(changed, y, fold)
    assert np.allclose(before[fold == 1], after[fold == 1])
    assert not np.allclose(before[fold != 1], after[fold != 1])


def _check_cv(bench, name, C_grid=(0.1,)):
    tracks, extra = _synthetic_tracks(6), _synthetic_tracks(2, role="train", seed=1)
    design = next(d for d in bench.DESIGNS if d.name == name)
    cv = bench.cross_validate(design, tracks, extra, bench.outer_folds(tracks, 3, 0), 0, C_grid=C_grid)
    accuracy = (cv["logits"].argmax(1) == cv["y"]).mean()
    assert accuracy > 0.9, (name, accuracy)
    assert cv["C"] == [0.1] * 3
    assert (cv["temperature_inner"] is not None) == (design.C is None)
    return cv, tracks


def test_transfer_cv_fixed_and_segment_designs_learn_held_out_genres():
    import numpy as np

    bench = _bench("transfer_cv")
    _check_cv(bench, "lr-msd-emb+fma")
    _, tracks = _check_cv(bench, "seg-lr-msd-emb")
    design = next(d for d in bench.DESIGNS if d.name == "seg-lr-msd-emb")
    probs = np.exp(bench.fit_design(design, tracks, 0.1)(tracks))
    assert np.allclose(probs.sum(1), 1)  # log of the mean segment probability


def test_transfer_cv_nested_design_runs_the_library_recipe():
    _check_cv(_bench("transfer_cv"), "res-msd-emb+tags-nestedC")


def test_transfer_cv_repeated_splits_differ_and_count_every_track_once_per_split():
    import numpy as np

    bench = _bench("transfer_cv")
    tracks, extra = _synthetic_tracks(6), _synthetic_tracks(2, role="train", seed=1)
    assert not np.array_equal(bench.outer_folds(tracks, 3, 0), bench.outer_folds(tracks, 3, 1))
    designs = [d for d in bench.DESIGNS if d.name in ("lr-msd-emb+fma", "zs-msd")]
    rep = bench.repeated_cv(designs, tracks, extra, 3, [0, 1], (0.1,))
    learned, zero_shot = rep["lr-msd-emb+fma"], rep["zs-msd"]
    assert len(learned["balanced_accuracy"]) == 2 and min(learned["balanced_accuracy"]) > 0.9
    assert learned["counts"].sum() == 2 * len(tracks) and learned["hits"].sum() > 0.9 * 2 * len(tracks)
    assert max(zero_shot["balanced_accuracy"]) < 0.9  # random tags: the zero-shot head cannot learn them
    text = bench.repeated_markdown(rep, [0, 1], 3, "cmd")
    first, second = [line for line in text.splitlines() if line.startswith("| lr-") or line.startswith("| zs-")]
    assert first.startswith("| lr-msd-emb+fma |") and second.startswith("| zs-msd |")  # best mean first


def test_fewshot_keeps_two_tracks_of_the_scarce_genre_from_two_artists():
    import numpy as np

    bench = _bench("fewshot_cv")
    tracks = _synthetic_tracks()
    kept = bench.scarce_subset(tracks, "jazz", 2, np.random.default_rng(0))
    jazz = [t for t in kept if t.label == "jazz"]
    assert len(jazz) == 2 and len({bench.transfer.group_of(t) for t in jazz}) == 2
    assert [t for t in kept if t.label != "jazz"] == [t for t in tracks if t.label != "jazz"]


def test_fewshot_trains_on_scarce_data_and_scores_only_held_out_folds(monkeypatch):
    import numpy as np

    bench = _bench("fewshot_cv")
    tracks, extra = _synthetic_tracks(), _synthetic_tracks(4, role="extra", seed=1)
    fold = np.array([i // 2 % 4 for i in range(len(tracks))])  # artists (two tracks each) never split
    design = next(d for d in bench.tcv.DESIGNS if d.name == "res-msd-emb+tags+fma")
    fitted = bench.tcv.fit_design
    seen = []

    def spy(design, train, C):
        predict = fitted(design, train, C)

        def scored(test):
            seen.append((train, test))
            return predict(test)
        return scored

    monkeypatch.setattr(bench.tcv, "fit_design", spy)
    run = bench.fewshot(design, tracks, extra, fold, "jazz", 2, 2, seed=0)
    assert len(seen) == 2 * 4 and len(run["y"]) == 2 * len(tracks)
    for train, test in seen:
        assert sum(t.label == "jazz" for t in train) == 2  # no FMA track of the scarce genre either
        assert {t.track_id for t in train}.isdisjoint(t.track_id for t in test)
        assert any(t.role == "extra" for t in train)
    summary = bench.summarise({"jazz": run})["jazz"]
    assert 0.0 <= summary["recall"] <= 1.0 and 0.0 <= summary["others_bal"] <= 1.0


def test_scarce_ideas_per_genre_penalty_is_the_library_fit_at_one_and_shrinks_a_scarce_genre():
    import numpy as np
    from scipy.optimize import minimize

    from genrekit import heads

    bench = _bench("scarce_ideas")
    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 20 + [2] * 3)
    x = rng.normal(size=(len(y), 6)) + np.eye(6)[y] * 2
    offset, weights = rng.normal(size=(len(y), 3)), np.ones(len(y))
    library = heads._fit_softmax(x, y, offset, weights, 0.1, 2000, minimize)
    same = heads._fit_softmax(x, y, offset, weights, 0.1, 2000, minimize, penalty=np.ones(3))
    assert np.allclose(library[0], same[0], atol=1e-8) and np.allclose(library[1], same[1], atol=1e-8)
    shrunk = bench.shrink_scarce(1.0)(x, y, offset, weights, 0.1, 2000, minimize)
    norms = np.linalg.norm(shrunk[0], axis=1) / np.linalg.norm(library[0], axis=1)
    assert norms[2] < 0.8 and abs(norms[0] - 1) < 0.2  # the 3-track genre's penalty is 20/3 times larger


def test_scarce_ideas_distilled_classical_tags_never_come_from_the_tracks_own_artist():
    import numpy as np

    from genrekit.heads import musicnn_tags

    bench = _bench("scarce_ideas")
    tracks = _synthetic_tracks()
    rng = np.random.default_rng(1)
    for t in tracks:
        t.features["MTT_musicnn/tags"] = rng.uniform(0.01, 0.9, (len(t.features["MSD_musicnn/tags"]), 50))
    columns = [musicnn_tags("MTT_musicnn").index(t) for t in bench.CLASSICAL_TAGS]
    assert columns == bench.CLASSICAL_COLUMNS
    first = bench.distilled(tracks)
    changed = [dict(t.features) for t in tracks]
    own = [i for i, t in enumerate(tracks) if bench.transfer.group_of(t) == bench.transfer.group_of(tracks[0])]
    for i in own:  # the first track's artist: its targets change, so only the other artists' predictions may
        tracks[i].features = {**tracks[i].features, "MTT_musicnn/tags": 1 - changed[i]["MTT_musicnn/tags"]}
    second = bench.distilled(tracks)

    def classical(run, i):
        return run[i].features["MTT_musicnn/tags"][:, columns]

    assert all(np.array_equal(classical(first, i), classical(second, i)) for i in own)
    others = [i for i in range(len(tracks)) if i not in own]
    assert any(not np.array_equal(classical(first, i), classical(second, i)) for i in others)
    kept = [c for c in range(50) if c not in columns]  # only MTT's classical tags are replaced
    assert np.array_equal(first[0].features["MTT_musicnn/tags"][:, kept], changed[0]["MTT_musicnn/tags"][:, kept])


def test_scarce_ideas_restore_the_library_prior_and_fit_even_on_error():
    from genrekit import heads

    bench = _bench("scarce_ideas")
    proxies, fit = dict(heads.PROXY_TAGS), heads._fit_softmax
    idea = bench.Idea("x", None, stand_ins=["instrumental"], fit=bench.shrink_scarce(1.0))
    try:
        with idea:
            assert heads.PROXY_TAGS["classical"] == {"MSD_musicnn": ["instrumental"]}
            assert heads._fit_softmax is idea.fit
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert heads.PROXY_TAGS == proxies and heads._fit_softmax is fit


def test_bandwidth_bench_removes_the_highs_and_keeps_the_original_as_reference(tmp_path):
    import numpy as np
    import soundfile as sf

    bench = _bench("bandwidth")
    source = tmp_path / "noise.wav"
    sf.write(source, np.random.default_rng(0).standard_normal(16000).astype("float32") * 0.1, 16000)
    versions = bench.low_passed_versions([source], [2000.0], tmp_path)
    assert versions[0.0] == [source] and len(versions[2000.0]) == 1
    y, sr = sf.read(versions[2000.0][0], dtype="float32")
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    assert spectrum[freqs > 4000].mean() < 1e-4 * spectrum[freqs < 1500].mean()  # about 36 dB per octave


def test_patch_stride_simulation_from_patch_zero_is_what_the_library_holds():
    import numpy as np

    from genrekit.heads import hold_strided

    bench = _bench("patch_stride")
    tracks = _synthetic_tracks(n_per_genre=2)
    for t in tracks:
        n = len(t.features["MSD_musicnn/tags"])
        t.features["MTT_musicnn/tags"] = np.arange(n)[:, None] * np.ones((1, 50))
    for track, held in zip(tracks, bench.starting_at(tracks, 2, 0)):
        expected = hold_strided(track.features, {"MTT_musicnn": 2})
        assert all(np.array_equal(held.features[k], expected[k]) for k in expected)
    shifted = bench.starting_at(tracks, 2, 1)[0].features
    n = len(shifted["MTT_musicnn/tags"])
    assert shifted["MTT_musicnn/tags"][:, 0].tolist() == [min(i // 2 * 2 + 1, n - 1) for i in range(n)]
    assert np.array_equal(shifted["MSD_musicnn/tags"], tracks[0].features["MSD_musicnn/tags"])  # MSD untouched
    names = [idea.name for idea, _ in bench.designs(bench.transfer.HeadSpec(prior="msd_proxy"), tracks, [4])]
    assert names == ["msd only", "mtt every patch", "mtt stride 4", "mtt stride 4, other patches"]


def test_external_noise_bench_makes_each_noise_each_way(tmp_path):
    import shutil

    import numpy as np
    import pytest
    import soundfile as sf

    if not (shutil.which("ffmpeg") and shutil.which("sox")):
        pytest.skip("needs ffmpeg and sox (apt-get install ffmpeg sox)")
    bench = _bench("external_noise")
    sources = bench.make_sources(tmp_path, 2.0)
    assert len(sources) == len(bench.FFMPEG_COLOURS) + len(bench.SOX_COLOURS)
    for path in sources:
        y, sr = sf.read(path)
        assert (sr, y.shape[1]) == (bench.SR, 2) and abs(len(y) / sr - 2.0) < 0.05
        assert 20 * np.log10(np.abs(y).max()) == pytest.approx(bench.PEAK_DB, abs=0.1)
        correlation = np.corrcoef(y[:, 0], y[:, 1])[0, 1]
        assert correlation < 0.2 if path.name.startswith("ffmpeg") else correlation > 0.999  # sox: one noise
    white = next(p for p in sources if "ffmpeg-white" in p.name)
    treated = {t: bench.treat(white, t, tmp_path) for t in bench.TREATMENTS}
    assert len(set(treated.values())) == len(bench.TREATMENTS) and treated["mp3 128k"].suffix == ".mp3"

    def high_share(path):
        y, sr = sf.read(path)
        spectrum = np.abs(np.fft.rfft(y.mean(axis=1))) ** 2
        return spectrum[np.fft.rfftfreq(len(y), 1 / sr) > 10000].sum() / spectrum.sum()

    assert high_share(treated["low-pass 5 kHz"]) < 0.01 < high_share(treated["as made"])


def test_results_csv_widens_for_a_new_column_without_shifting_old_values(tmp_path):
    import csv

    append_rows = _bench("results_csv").append_rows

    path = tmp_path / "r.csv"
    append_rows(path, [{"date": "d1", "value": 1}])
    append_rows(path, [{"date": "d2", "value": 2}])
    append_rows(path, [{"date": "d3", "extra": "x", "value": 3}])
    append_rows(path, [{"date": "d4", "value": 4}])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["date"], r["value"], r["extra"]) for r in rows] == [
        ("d1", "1", ""), ("d2", "2", ""), ("d3", "3", "x"), ("d4", "4", "")]
    assert not list(tmp_path.glob(".*tmp"))


def test_c_grid_chooses_the_prior_scale_whose_inner_cv_scores_best(monkeypatch):
    import numpy as np

    from genrekit.training import transfer

    bench = _bench("c_grid")
    labels = ["blues", "jazz", "rock"]
    y = np.array([0, 1, 2, 0, 1, 2])
    right, wrong = np.eye(3)[y] * 5, np.eye(3)[(y + 1) % 3] * 5
    inner = {0.5: (0.01, right), 1.0: (0.1, wrong), 2.0: (1.0, right * 0.2)}  # 0.5 and 2 tie; 0.5 is surer

    def scripted_choose_C(spec, train, extra, labels_, seed):
        C, logits = inner[spec.prior_scale]
        return C, logits, y

    monkeypatch.setattr(bench.transfer, "choose_C", scripted_choose_C)
    specs = bench.specs_of(transfer.HeadSpec(inputs=["MSD_musicnn/tags"], prior="msd"),
                           bench.Row("test", (0.01, 0.1, 1.0), (1.0, 2.0, 0.5)))
    spec, C = bench.choose(specs, [], [], labels, 0)
    assert (spec.prior_scale, C) == (0.5, 0.01) and spec is specs[2]
    assert [s.C for s in specs] == [[0.01, 0.1, 1.0]] * 3
    names = [r.name for r in bench.rows_to_try()]
    assert len(names) == len(set(names)) and any("(shipped)" in n for n in names)
    shipped = transfer.TransferConfig.from_file(REPO / "configs" / "default_model.yaml").head
    assert bench.SHIPPED_SCALE == shipped.prior_scale and [bench.SHIPPED_C] == shipped.C


def test_c_grid_average_rows_average_every_heads_logits_and_choose_nothing(monkeypatch):
    import numpy as np
    import pytest

    from genrekit.training import transfer

    bench = _bench("c_grid")
    tracks = _synthetic_tracks(n_per_genre=4)
    labels = ["blues", "jazz", "rock"]
    fitted = []

    def scripted_fit(spec, train, labels_, C):
        fitted.append((spec.prior_scale, C))
        return (spec.prior_scale, C)

    def scripted_logits(head, test):  # each head favours one genre; only the average favours rock
        favourite = {(1.0, 0.1): 0, (1.0, 1.0): 1, (0.5, 0.1): 2, (0.5, 1.0): 2}[head]
        return np.tile(np.eye(3)[favourite] * (3 if favourite < 2 else 2), (len(test), 1))

    monkeypatch.setattr(bench.transfer, "fit_head", scripted_fit)
    monkeypatch.setattr(bench.transfer, "logits_of", scripted_logits)
    monkeypatch.setattr(bench, "choose", lambda *a: pytest.fail("an average row chooses nothing"))
    specs = bench.specs_of(transfer.HeadSpec(inputs=["MSD_musicnn/tags"], prior="msd"),
                           bench.Row("avg", (0.1, 1.0), (1.0, 0.5), average=True))
    fold = np.arange(len(tracks)) % 2
    pred, chosen = bench.fold_predictions(specs, tracks, [], labels, fold, 0, average=True)
    assert chosen == [] and (pred == 2).all()
    assert sorted(set(fitted)) == [(0.5, 0.1), (0.5, 1.0), (1.0, 0.1), (1.0, 1.0)] and len(fitted) == 8


def test_c_grid_first_seed_scores_other_fold_splits_and_says_they_were_not_chosen_on(monkeypatch):
    import numpy as np

    bench = _bench("c_grid")
    tracks = _synthetic_tracks(n_per_genre=4)
    labels = ["blues", "jazz", "rock"]
    seen = []

    def scripted_predictions(specs, cv_tracks, extra, labels_, fold, seed, subset=None, average=False):
        seen.append(seed)
        return np.array([labels.index(t.label) for t in cv_tracks]), []

    monkeypatch.setattr(bench, "fold_predictions", scripted_predictions)
    monkeypatch.setattr(bench, "outer_folds", lambda tracks_, folds, seed: np.zeros(len(tracks_), dtype=int))
    bench.plain_cv([], tracks, [], labels, splits=3, folds=2, first_seed=10)
    assert seen == [10, 11, 12]
    fresh, chosen_on, overlapping = range(10, 20), range(0, 10), range(5, 15)
    assert bench.results_name(fresh) == "c_grid_seeds10-19" and bench.results_name(chosen_on) == "c_grid"
    assert "not flattered" in bench.caveat(fresh) and "10-19" in bench.caveat(fresh)
    assert "landscape" in bench.caveat(chosen_on) and "landscape" in bench.caveat(overlapping)


def test_fma_prior_scores_the_recipes_name_prior_against_none_on_the_labels_with_tracks(tmp_path):
    import numpy as np

    from genrekit.heads import musicnn_tags
    from genrekit.training.transfer import LabeledTrack, TransferConfig

    bench = _bench("fma_prior")
    names, rng, tracks = musicnn_tags("MSD_musicnn"), np.random.default_rng(0), []
    for g, tag in (("Folk", "folk"), ("Hip-Hop", "Hip-Hop"), ("Pop", "pop")):
        for i in range(6):  # only the tag named like the genre tells them apart
            tags = rng.uniform(0.01, 0.2, (3, 50))
            tags[:, names.index(tag)] = 0.9
            tracks.append(LabeledTrack(f"{g}{i}", f"{g}{i}.mp3", g, f"{g} artist {i}", "cv", "fma",
                                       {"MSD_musicnn/tags": tags.astype(np.float32)}))
    config = TransferConfig(labels=["Electronic", "Folk", "Hip-Hop", "Pop"], sources=[{"spec": f"folder:{tmp_path}"}],
                            head={"inputs": [], "prior": "msd", "C": [0.1]}, folds=3)
    labels, reports = bench.compare(config, tracks, splits=2)
    assert labels == ["Folk", "Hip-Hop", "Pop"]  # Electronic has no tracks: CV cannot score it
    (named, prior), (none_name, none) = reports.items()
    assert "Folk ← folk" in named and "Hip-Hop ← Hip-Hop" in named and none_name == "no prior"
    assert prior["splits"] == none["splits"] == 2 and prior["balanced_accuracy_mean"] == 1.0
    assert none["balanced_accuracy_mean"] < 0.5  # no prior and no inputs: biases only
    table = bench.markdown(labels, reports, "cmd", "machine", {"Folk": 6, "Hip-Hop": 6, "Pop": 6})
    assert "| no prior | " in table and "-0." in table and "(0/2)" in table
