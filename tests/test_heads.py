"""genrekit.heads: track heads on synthetic per-segment features (no audio, no torch)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from genrekit import heads
from genrekit.errors import CheckpointError, ConfigError
from genrekit.heads import GENRE_TAGS, TagPrior, TrackHead, fit_track_head, zero_shot_head

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
EMB = "MSD_musicnn/penultimate"
MSD_TAGS = "MSD_musicnn/tags"
MTT_TAGS = "MTT_musicnn/tags"


def synthetic_tracks(n_per_class=(12, 6, 3), key=EMB, seed=0, segments=8):
    """Tracks of 3 classes whose per-segment embedding is a class centre plus noise."""
    rng = np.random.default_rng(seed)
    dim = heads.FEATURE_KINDS[key.split("/")[1]]
    centres = rng.normal(0, 1, (len(n_per_class), dim))
    tracks, y = [], []
    for c, n in enumerate(n_per_class):
        for _ in range(n):
            track_centre = centres[c] + rng.normal(0, 1.5, dim)
            tracks.append({key: (track_centre + rng.normal(0, 2, (segments, dim))).astype(np.float32)})
            y.append(["jazz", "pop", "rock"][c])
    return tracks, y


def tag_matrix(network: str, high: dict[str, float], segments=6, base=0.01) -> np.ndarray:
    names = heads.musicnn_tags(network)
    m = np.full((segments, 50), base, dtype=np.float32)
    for tag, p in high.items():
        m[:, names.index(tag)] = p
    return m


@pytest.mark.parametrize("class_balance,sk_weight", [("weight", "balanced"), ("none", None)])
def test_fit_matches_sklearn_logistic_regression(class_balance, sk_weight):
    from sklearn.linear_model import LogisticRegression

    tracks, y = synthetic_tracks(key=MSD_TAGS)
    head = fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], C=0.05, class_balance=class_balance)
    x = heads.pool_tracks(tracks, [MSD_TAGS], "mean")
    xs = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=0.05, class_weight=sk_weight, tol=1e-10, max_iter=5000).fit(xs, y)
    assert np.allclose(head.weight, ref.coef_, atol=1e-4)
    # softmax is shift-invariant: compare centred intercepts
    assert np.allclose(head.bias - head.bias.mean(), ref.intercept_ - ref.intercept_.mean(), atol=1e-4)
    probs = np.stack([head.predict_proba(t) for t in tracks])
    assert np.allclose(probs, ref.predict_proba(xs), atol=1e-4)


def test_class_weight_changes_the_fit():
    tracks, y = synthetic_tracks(key=MSD_TAGS)
    a = fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], C=0.05, class_balance="weight")
    b = fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], C=0.05, class_balance="none")
    assert not np.allclose(a.bias, b.bias, atol=1e-3)
    with pytest.raises(ConfigError, match="class_balance"):
        fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], class_balance="oversample")


def test_artist_balance_shares_each_genre_among_its_artists():
    from sklearn.linear_model import LogisticRegression

    y = np.array([0, 0, 0, 0, 1, 1])  # jazz: artist a 3 tracks, artist b 1; pop: c, d
    groups = ["a", "a", "a", "b", "c", "d"]
    w = heads.class_weights(y, 3, "artist", groups)
    assert np.allclose([w[:4].sum(), w[4:].sum()], [3, 3])  # the classes weigh as with "weight"
    assert np.isclose(w[:3].sum(), w[3]) and np.allclose(w[:3], w[0])  # a's three tracks weigh as b's one
    with pytest.raises(ConfigError, match="one artist"):
        heads.class_weights(y, 3, "artist")
    # the fit is scikit-learn's with those sample weights
    tracks, labels = synthetic_tracks(key=MSD_TAGS)
    groups = [f"{g}{i % (2 + (g == 'jazz') * 3)}" for i, g in enumerate(labels)]
    head = fit_track_head(tracks, labels, ["jazz", "pop", "rock"], [MSD_TAGS], C=0.05, class_balance="artist",
                          groups=groups)
    x = heads.pool_tracks(tracks, [MSD_TAGS], "mean")
    weights = heads.class_weights(np.array([["jazz", "pop", "rock"].index(g) for g in labels]), 3, "artist", groups)
    assert not np.allclose(weights, weights[0])
    ref = LogisticRegression(C=0.05, tol=1e-10, max_iter=5000).fit((x - x.mean(0)) / x.std(0), labels,
                                                                    sample_weight=weights)
    assert np.allclose(head.weight, ref.coef_, atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "mean_std"])
def test_track_logits_are_the_mean_of_segment_votes(pooling):
    tracks, y = synthetic_tracks()
    head = fit_track_head(tracks, y, ["jazz", "pop", "rock"], [EMB], pooling=pooling, C=0.1)
    assert head.n_pooled == (400 if pooling == "mean_std" else 200)
    for t in tracks[:5]:
        votes = head.segment_logits(t)
        assert votes.shape == (8, 3)
        assert np.allclose(votes.mean(0), head.logits(t))
    accuracy = np.mean([head.labels[head.predict_proba(t).argmax()] == g for t, g in zip(tracks, y)])
    assert accuracy > 0.9  # training tracks: only a sanity check that the fit learned something


def test_held_out_tracks_are_classified():
    tracks, y = synthetic_tracks(n_per_class=(20, 20, 20), seed=1)
    train = list(range(0, 60, 2))
    test = list(range(1, 60, 2))
    head = fit_track_head([tracks[i] for i in train], [y[i] for i in train], ["jazz", "pop", "rock"], [EMB], C=0.1)
    hits = [head.labels[head.predict_proba(tracks[i]).argmax()] == y[i] for i in test]
    assert np.mean(hits) > 0.8


def test_round_trip_through_json_and_file(tmp_path):
    tracks, y = synthetic_tracks()
    prior = TagPrior(["jazz", "pop", "rock"])
    feats = [{**t, MSD_TAGS: tag_matrix("MSD_musicnn", {"jazz": 0.3}, segments=8),
              MTT_TAGS: tag_matrix("MTT_musicnn", {"pop": 0.2}, segments=8)} for t in tracks]
    head = fit_track_head(feats, y, ["jazz", "pop", "rock"], [EMB, MSD_TAGS], pooling="mean_std", C=0.1, prior=prior)
    head = heads.with_temperature(head, 1.7)
    again = TrackHead.from_dict(json.loads(json.dumps(head.to_dict())))
    assert again.labels == head.labels and again.inputs == head.inputs and again.temperature == 1.7
    assert again.networks == ["MSD_musicnn", "MTT_musicnn"]
    for t in feats[:4]:
        assert np.allclose(again.predict_proba(t), head.predict_proba(t), atol=1e-5)
    loaded = TrackHead.load(head.save(tmp_path / "head.json"))
    assert np.allclose(loaded.segment_logits(feats[0]), head.segment_logits(feats[0]), atol=1e-4)
    # plain lists are accepted too
    d = head.to_dict()
    d["bias"] = head.bias.tolist()
    assert np.allclose(TrackHead.from_dict(d).bias, head.bias)


def _valid_dict():
    tracks, y = synthetic_tracks()
    return fit_track_head(tracks, y, ["jazz", "pop", "rock"], [EMB], C=0.1).to_dict()


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(format="other"), "not a genrekit track head"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d.pop("weight"), "lacks field"),
    (lambda d: d.update(labels=["jazz", "jazz", "rock"]), "distinct"),
    (lambda d: d.update(labels=["jazz", "pop"]), "shape"),
    (lambda d: d.update(dims=[100]), "not a musicnn feature"),
    (lambda d: d.update(inputs=["VGG/penultimate"]), "not a musicnn feature"),
    (lambda d: d.update(pooling="max"), "pooling"),
    (lambda d: d.update(temperature=0), "temperature"),
    (lambda d: d.update(temperature="hot"), "temperature"),
    (lambda d: d.update(bias=[0.0, float("nan"), 0.0]), "NaN"),
    (lambda d: d.update(bias={"shape": [3], "b64": "!!!"}), "not a float array"),
    (lambda d: d.update(prior={"genre_tags": {"jazz": {"MSD_musicnn": ["bebop"]}}, "tags": {},
                               "untagged_logit": -3, "scale": 1}), "prior"),
])
def test_loading_rejects_bad_heads_with_one_line(change, message):
    d = _valid_dict()
    change(d)
    with pytest.raises(CheckpointError, match=message) as err:
        TrackHead.from_dict(d, source="heads/bad.json")
    assert str(err.value).startswith("heads/bad.json: ") and "\n" not in str(err.value)


def test_load_reports_missing_and_garbled_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        TrackHead.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"bad\.json: track head is not readable JSON"):
        TrackHead.load(bad)


def test_inference_checks_features():
    tracks, y = synthetic_tracks()
    head = fit_track_head(tracks, y, ["jazz", "pop", "rock"], [EMB], C=0.1)
    with pytest.raises(ValueError, match="needs feature"):
        head.predict_proba({"MTT_musicnn/penultimate": tracks[0][EMB]})
    with pytest.raises(ValueError, match=r"\(n_segments >= 1, 200\)"):
        head.predict_proba({EMB: tracks[0][EMB][:, :10]})
    with pytest.raises(ValueError, match="NaN"):
        head.predict_proba({EMB: np.full((3, 200), np.nan)})


def test_shipped_tag_names_cover_the_mapping():
    prior = TagPrior(GENRES)  # raises if a mapped tag is not one of the network's tags
    assert set(prior.tags) == {"MSD_musicnn", "MTT_musicnn"}
    assert prior.genre_tags["reggae"] == {} and prior.genre_tags["disco"] == {}
    assert TagPrior.with_proxies(GENRES).genre_tags["disco"]["MSD_musicnn"] == ["dance", "funk"]
    with pytest.raises(ConfigError, match="does not have"):
        TagPrior(["jazz", "rock"], {"jazz": {"MSD_musicnn": ["bebop"]}})


def test_zero_shot_follows_the_tags():
    head = zero_shot_head(GENRES)
    assert head.networks == ["MSD_musicnn", "MTT_musicnn"]
    blues = {MSD_TAGS: tag_matrix("MSD_musicnn", {"blues": 0.7, "rock": 0.3}), MTT_TAGS: tag_matrix("MTT_musicnn", {})}
    classical = {MSD_TAGS: tag_matrix("MSD_musicnn", {}), MTT_TAGS: tag_matrix("MTT_musicnn", {"classic": 0.8})}
    quiet = {MSD_TAGS: tag_matrix("MSD_musicnn", {}), MTT_TAGS: tag_matrix("MTT_musicnn", {})}
    assert GENRES[head.predict_proba(blues).argmax()] == "blues"
    assert GENRES[head.predict_proba(classical).argmax()] == "classical"
    # nothing tagged above 5 %: the untagged genres (disco, reggae) share the top
    top = head.predict_proba(quiet)
    assert {GENRES[i] for i in np.flatnonzero(np.isclose(top, top.max()))} == {"disco", "reggae"}
    msd_only = zero_shot_head(GENRES, TagPrior(GENRES, {g: {n: t for n, t in per.items() if n == "MSD_musicnn"}
                                                        for g, per in GENRE_TAGS.items()}))
    assert msd_only.networks == ["MSD_musicnn"]
    assert msd_only.predict_proba({MSD_TAGS: blues[MSD_TAGS]}).argmax() == 0


def test_prior_logits_average_networks_and_segments():
    prior = TagPrior(["country", "jazz"])
    msd = tag_matrix("MSD_musicnn", {"country": 0.5, "jazz": 0.2}, segments=2)
    msd[1, heads.musicnn_tags("MSD_musicnn").index("jazz")] = 0.8
    mtt = tag_matrix("MTT_musicnn", {"country": 0.9}, segments=2)
    logits = prior.segment_logits({MSD_TAGS: msd, MTT_TAGS: mtt})
    logodds = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert np.allclose(logits[:, 0], (logodds(0.5) + logodds(0.9)) / 2, atol=1e-6)
    assert np.allclose(logits[:, 1], [logodds(0.2), logodds(0.8)], atol=1e-6)


def test_residual_on_a_constant_prior_only_shifts_the_bias():
    tracks, y = synthetic_tracks()
    labels = ["jazz", "pop", "rock"]
    # a prior whose logits are constant per genre: jazz 0, pop 0 (untagged), rock log-odds(0.3)
    prior = TagPrior(labels, {"rock": {"MSD_musicnn": ["rock"]}})
    feats = [{**t, MSD_TAGS: tag_matrix("MSD_musicnn", {"rock": 0.3}, segments=8)} for t in tracks]
    plain = fit_track_head(feats, y, labels, [EMB], C=0.05)
    residual = fit_track_head(feats, y, labels, [EMB], C=0.05, prior=prior)
    assert np.allclose(residual.weight, plain.weight, atol=1e-4)
    shift = prior.segment_logits(feats[0])[0]
    total = residual.bias + shift
    assert np.allclose(total - total.mean(), plain.bias - plain.bias.mean(), atol=1e-4)
    assert np.allclose(residual.predict_proba(feats[0]), plain.predict_proba(feats[0]), atol=1e-4)


def test_strong_penalty_keeps_the_prior():
    labels = ["blues", "jazz"]
    prior = TagPrior(labels)
    rng = np.random.default_rng(0)
    feats, y = [], []
    for i in range(20):
        genre = labels[i % 2]
        feats.append({EMB: rng.normal(0, 1, (5, 200)),
                      MSD_TAGS: tag_matrix("MSD_musicnn", {genre: 0.6, labels[1 - i % 2]: 0.1}, segments=5)})
        y.append(genre)
    head = fit_track_head(feats, y, labels, [EMB], C=1e-6, prior=prior)
    assert np.abs(head.weight).max() < 1e-3
    assert all(labels[head.predict_proba(f).argmax()] == g for f, g in zip(feats, y))


def test_the_recipes_prior_scale_multiplies_the_prior_the_head_keeps():
    from genrekit.training.transfer import HeadSpec, LabeledTrack, fit_head

    rng = np.random.default_rng(0)
    tracks = [LabeledTrack(str(i), f"{i}.wav", g, f"artist {i}", "cv", "folder", {
        MSD_TAGS: tag_matrix("MSD_musicnn", {g: 0.6, "jazz" if g != "jazz" else "rock": rng.uniform(0.1, 0.5)},
                             segments=4)}) for i, g in enumerate(["blues", "jazz", "rock"] * 4)]
    labels = ["blues", "jazz", "rock"]
    spec = HeadSpec(inputs=[MSD_TAGS], prior="msd")
    plain, scaled = (fit_head(dataclasses.replace(spec, prior_scale=s), tracks, labels, 1e-6) for s in (1.0, 0.5))
    features = tracks[0].features
    assert np.allclose(scaled.prior.segment_logits(features), 0.5 * plain.prior.segment_logits(features))
    # with the residual held at nothing, the track's logits are the scaled prior's (up to the bias)
    halved = scaled.logits(features) - scaled.bias
    assert np.allclose(halved, 0.5 * (plain.logits(features) - plain.bias), atol=1e-4)
    assert TrackHead.from_dict(json.loads(json.dumps(scaled.to_dict()))).prior.scale == 0.5


def test_genre_without_training_tracks():
    tracks, y = synthetic_tracks(key=MSD_TAGS)
    head = fit_track_head(tracks, y, ["blues", "jazz", "pop", "rock"], [MSD_TAGS], C=0.1)
    assert head.meta["genres_without_tracks"] == ["blues"]
    assert np.all(head.weight[0] == 0)
    assert all(head.predict_proba(t).argmax() != 0 for t in tracks)


def test_fit_rejects_bad_arguments():
    tracks, y = synthetic_tracks(key=MSD_TAGS)
    with pytest.raises(ConfigError, match="unknown"):
        fit_track_head(tracks, ["polka"] * len(tracks), ["jazz", "pop", "rock"], [MSD_TAGS])
    with pytest.raises(ConfigError, match="C must be"):
        fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], C=0)
    with pytest.raises(ConfigError, match="pooling"):
        fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], pooling="max")


def test_inference_needs_no_scipy_sklearn_or_torch(tmp_path):
    tracks, y = synthetic_tracks()
    path = fit_track_head(tracks, y, ["jazz", "pop", "rock"], [EMB], C=0.1).save(tmp_path / "h.json")
    np.save(tmp_path / "x.npy", tracks[0][EMB])
    x_path = str(tmp_path / "x.npy")
    code = ("import sys, numpy as np; from genrekit.heads import TrackHead;"
            f"h = TrackHead.load({str(path)!r}); p = h.predict_proba({{{EMB!r}: np.load({x_path!r})}});"
            "bad = [m for m in ('scipy', 'sklearn', 'torch') if m in sys.modules]; print(bad, p.sum());"
            "sys.exit(int(bool(bad) or abs(float(p.sum()) - 1) > 1e-6))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_warnings_from_fitting():
    tracks, y = synthetic_tracks(key=MSD_TAGS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_track_head(tracks, y, ["jazz", "pop", "rock"], [MSD_TAGS], C=1.0).meta["converged"]


def test_recipe_priors_choose_their_taggers_and_stand_ins():
    from genrekit.training.transfer import HeadSpec, make_prior

    msd, proxy, both = (make_prior(kind, GENRES) for kind in ("msd", "msd_proxy", "both"))
    assert list(msd.tags) == list(proxy.tags) == ["MSD_musicnn"] and set(both.tags) == {"MSD_musicnn", "MTT_musicnn"}
    assert msd.genre_tags["disco"] == {} and proxy.genre_tags["disco"] == {"MSD_musicnn": ["dance", "funk"]}
    assert {g: t for g, t in proxy.genre_tags.items() if g != "disco"} == \
        {g: t for g, t in msd.genre_tags.items() if g != "disco"}  # only genres without a tag get stand-ins
    assert proxy.genre_tags["reggae"] == {} and make_prior(None, GENRES) is None
    danceable = {MSD_TAGS: tag_matrix("MSD_musicnn", {"funk": 0.6})}
    assert GENRES[np.argmax(proxy.segment_logits(danceable)[0])] == "disco"
    assert GENRES[np.argmax(msd.segment_logits(danceable)[0])] != "disco"
    assert HeadSpec(inputs=[MSD_TAGS], prior="msd_proxy").networks == ["MSD_musicnn"]
    fill = make_prior("msd_fill", GENRES)  # MTT only where MSD names nothing: classical
    assert fill.genre_tags["classical"] == {"MTT_musicnn": ["classical", "classic"]}
    assert {g: t for g, t in fill.genre_tags.items() if g != "classical"} == \
        {g: t for g, t in msd.genre_tags.items() if g != "classical"}
    assert both.genre_tags["rock"].keys() == {"MSD_musicnn", "MTT_musicnn"}
    assert HeadSpec(inputs=[MSD_TAGS], prior="msd_fill").networks == ["MSD_musicnn", "MTT_musicnn"]
    proxy_fill = make_prior("msd_proxy_fill", GENRES)  # disco's MSD stand-ins and MTT's classical
    assert proxy_fill.genre_tags["classical"] == fill.genre_tags["classical"]
    assert proxy_fill.genre_tags["disco"] == proxy.genre_tags["disco"]
    assert {g: t for g, t in proxy_fill.genre_tags.items() if g not in ("classical", "disco")} == \
        {g: t for g, t in msd.genre_tags.items() if g not in ("classical", "disco")}
    with pytest.raises(ConfigError, match="head.prior must be one of"):
        HeadSpec(prior="mtt")
    with pytest.raises(ConfigError, match="head.class_balance must be one of weight, artist, none"):
        HeadSpec(class_balance="sample")


def test_recipe_segment_level_reaches_the_features_and_their_cache(tmp_path, monkeypatch):
    import soundfile as sf

    from genrekit.config import MUSICNN_FEATURES
    from genrekit.training import transfer

    recipe = dict(sources=[{"spec": "folder:x"}], features={"segment_rms_db": -15})
    assert transfer.TransferConfig(**recipe).feature_config() == \
        dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=-15)
    with pytest.raises(ConfigError, match="only segment_rms_db, max_gain_db"):
        transfer.TransferConfig(**{**recipe, "features": {"n_mels": 64}})
    with pytest.raises(ConfigError, match="segment_rms_db must be"):
        transfer.TransferConfig(**{**recipe, "features": {"segment_rms_db": 3}})

    t = np.arange(16000 * 7) / 16000
    path = tmp_path / "soft.wav"
    sf.write(path, (0.01 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32), 16000)
    cache = tmp_path / "cache"
    outputs = {}
    for level in (None, -15):
        config = dataclasses.replace(MUSICNN_FEATURES, segment_rms_db=level)
        track = transfer.LabeledTrack("t", str(path), "pop", None, "cv", "test")
        assert transfer.extract_features([track], ["MSD_musicnn"], cache, False, config) == []
        outputs[level] = track.features["MSD_musicnn/tags"]
    assert len(list(cache.glob("*.npz"))) == 2  # one file per setting
    assert not np.allclose(outputs[None], outputs[-15], atol=1e-3)
    monkeypatch.setattr(transfer, "_network_outputs", lambda *a: pytest.fail("recomputed a cached track"))
    again = transfer.LabeledTrack("t", str(path), "pop", None, "cv", "test")
    transfer.extract_features([again], ["MSD_musicnn"], cache, False, dataclasses.replace(MUSICNN_FEATURES,
                                                                                         segment_rms_db=-15))
    assert np.array_equal(again.features["MSD_musicnn/tags"], outputs[-15])


def _tracks_with_mtt(seed=0, n=10):
    rng = np.random.default_rng(seed)
    tracks, y = [], []
    for c, genre in enumerate(["classical", "jazz", "rock"]):
        for _ in range(6):
            mtt = rng.uniform(0.01, 0.2, (n, 50)).astype(np.float32)
            mtt[:, c] += 0.5
            tracks.append({MSD_TAGS: rng.uniform(0, 1, (n, 50)).astype(np.float32), MTT_TAGS: mtt})
            y.append(genre)
    return tracks, y


def test_hold_strided_reads_every_kth_patch_and_is_idempotent():
    x = {MTT_TAGS: np.arange(11)[:, None] * np.ones((1, 50)), MSD_TAGS: np.arange(11)[:, None] * np.ones((1, 50))}
    held = heads.hold_strided(x, {"MTT_musicnn": 4})
    assert held[MTT_TAGS][:, 0].tolist() == [0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8]
    assert held[MSD_TAGS][:, 0].tolist() == list(range(11))  # other networks untouched
    again = heads.hold_strided(held, {"MTT_musicnn": 4})
    assert all(np.array_equal(again[k], held[k]) for k in x)


def test_strided_head_never_reads_the_patches_between_and_round_trips():
    tracks, y = _tracks_with_mtt()
    labels = ["classical", "jazz", "rock"]
    prior = TagPrior(labels, {"classical": {"MTT_musicnn": ["classical"]}})
    head = fit_track_head(tracks, y, labels, [MSD_TAGS, MTT_TAGS], C=0.1, prior=prior,
                          patch_strides={"MTT_musicnn": 4})
    assert head.patch_strides == {"MTT_musicnn": 4}
    scrambled = []
    for t in tracks:  # rows 1-3, 5-7, 9 of MTT changed: the fit and the logits must not move
        mtt = t[MTT_TAGS].copy()
        mtt[np.arange(len(mtt)) % 4 != 0] = 0.99
        scrambled.append({**t, MTT_TAGS: mtt})
    again = fit_track_head(scrambled, y, labels, [MSD_TAGS, MTT_TAGS], C=0.1, prior=prior,
                           patch_strides={"MTT_musicnn": 4})
    np.testing.assert_allclose(again.weight, head.weight, atol=1e-6)
    np.testing.assert_allclose(head.logits(scrambled[0]), head.logits(tracks[0]), atol=1e-9)
    unstrided = fit_track_head(scrambled, y, labels, [MSD_TAGS, MTT_TAGS], C=0.1, prior=prior)
    assert not np.allclose(unstrided.weight, head.weight, atol=1e-3)  # the scrambled rows do matter without
    loaded = TrackHead.from_dict(json.loads(json.dumps(head.to_dict())))
    assert loaded.patch_strides == {"MTT_musicnn": 4}
    np.testing.assert_allclose(loaded.logits(scrambled[3]), head.logits(tracks[3]), atol=1e-5)


@pytest.mark.parametrize("strides,message", [({"MTT_musicnn": 3}, "must be a whole number that divides 32"),
                                             ({"MTT_musicnn": "4"}, "must be a whole number"),
                                             ({"VGG": 4}, "not musicnn networks"),
                                             (["MTT_musicnn", 4], "must map network names to strides")])
def test_bad_patch_strides_are_refused_with_one_line(strides, message):
    tracks, y = _tracks_with_mtt()
    with pytest.raises(ConfigError, match=message):
        fit_track_head(tracks, y, ["classical", "jazz", "rock"], [MTT_TAGS], patch_strides=strides)
    head = fit_track_head(tracks, y, ["classical", "jazz", "rock"], [MTT_TAGS]).to_dict()
    with pytest.raises(CheckpointError, match=f"^saved.json: track head .*{message}"):
        TrackHead.from_dict({**head, "patch_strides": strides}, source="saved.json")


def test_recipe_patch_strides_must_name_a_network_the_head_uses_and_spare_the_detector():
    from genrekit.training.transfer import HeadSpec, TransferConfig

    assert HeadSpec(prior="msd_proxy_fill", patch_strides={"MTT_musicnn": 4}).patch_strides == {"MTT_musicnn": 4}
    with pytest.raises(ConfigError, match="does not use"):
        HeadSpec(prior="msd_proxy", inputs=[MSD_TAGS], patch_strides={"MTT_musicnn": 4})
    with pytest.raises(ConfigError, match="divides 32"):
        HeadSpec(prior="msd_proxy_fill", patch_strides={"MTT_musicnn": 5})
    with pytest.raises(ConfigError, match="detector.inputs use"):
        TransferConfig(sources=[{"spec": "folder:x"}],
                       head={"inputs": [MTT_TAGS], "prior": None, "patch_strides": {"MTT_musicnn": 2}})


def _detector_tracks(centre: float, n: int, group: str, rng) -> list:
    from genrekit.training.transfer import LabeledTrack

    tracks = []
    for i in range(n):
        x = rng.normal(0, 0.3, (10, 200))  # enough segments that 200 noise dimensions cannot part the classes
        x[:, 0] += centre
        tracks.append(LabeledTrack(f"{group}{i}", f"{group}{i}.wav", "x", f"{group}:b{i % 3}", "train", "manifest",
                                   {"MSD_musicnn/penultimate": x.astype(np.float32)}))
    return tracks


def test_family_detector_bounds_music_on_both_sides():
    # Music between two families of non-music on one axis: one plane cannot part music from both,
    # a softmax over music and each family can. P(not music) is 1 - P(music) in both.
    from genrekit.metrics import softmax
    from genrekit.training.transfer import detector_cv, fit_detector

    rng = np.random.default_rng(0)
    music = _detector_tracks(0.0, 60, "song", rng)
    nonmusic = _detector_tracks(3.0, 60, "noise", rng) + _detector_tracks(-3.0, 60, "tone", rng)
    binary = fit_detector(music, nonmusic, ["MSD_musicnn/penultimate"], 1.0)
    families = fit_detector(music, nonmusic, ["MSD_musicnn/penultimate"], 1.0, "families")
    assert binary.labels == ["music", "not_music"] and families.labels == ["music", "steady", "tonal"]

    def p_not_music(head, tracks):
        return np.array([1 - softmax(head.logits(t.features))[0] for t in tracks])

    assert p_not_music(families, nonmusic).min() > 0.8 > 0.2 > p_not_music(families, music).max()
    assert p_not_music(binary, music).max() > p_not_music(binary, nonmusic).min()  # no threshold parts them
    cv = detector_cv(music, nonmusic, ["MSD_musicnn/penultimate"], 1.0, 4, 0, "families")
    assert cv["is_music"].sum() == 60 and (cv["p_not_music"][~cv["is_music"]] > 0.5).all()


def test_spread_detector_parts_steady_noise_from_music_of_the_same_mean():
    # Music moves between two sounds from patch to patch; steady noise sits between them. The mean
    # of the patch features is the same for both, so a per-patch (mean) detector cannot part them;
    # the spread of the patches over the track (mean_std) can.
    from genrekit.metrics import softmax
    from genrekit.training.transfer import detector_cv, fit_detector, long_enough

    rng = np.random.default_rng(1)
    inputs = ["MSD_musicnn/penultimate"]
    music, nonmusic = _detector_tracks(0.0, 40, "song", rng), _detector_tracks(0.0, 40, "noise", rng)
    for t in music + nonmusic:  # 80 tracks: 199 noisy dimensions would part the training folds by chance
        t.features[inputs[0]][:, 5:] = 0.0
    for t in music:
        t.features[inputs[0]][:, 0] += np.tile([1.5, -1.5], 5)

    def parted(pooling):
        cv = detector_cv(music, nonmusic, inputs, 1.0, 4, 0, "families", pooling)
        p, is_music = cv["p_not_music"], cv["is_music"]
        return p[~is_music].min() > p[is_music].max()

    assert parted("mean_std") and not parted("mean")
    head = fit_detector(music, nonmusic, inputs, 1.0, "families", "mean_std")
    assert head.pooling == "mean_std" and head.labels == ["music", "steady"]
    assert 1 - softmax(head.logits(nonmusic[0].features))[0] > 0.5 > 1 - softmax(head.logits(music[0].features))[0]
    short = [music[0], _detector_tracks(0.0, 1, "x", rng)[0]]
    short[1].features["MSD_musicnn/penultimate"] = short[1].features["MSD_musicnn/penultimate"][:2]
    assert long_enough(short, inputs, 3) == [music[0]]


def test_recipe_detector_pooling_and_min_segments_are_checked():
    from genrekit.training.transfer import TransferConfig

    recipe = {"sources": [{"spec": "gtzan:/nowhere"}]}
    assert TransferConfig(**recipe, detector={"pooling": "mean_std", "min_segments": 4}).detector.min_segments == 4
    with pytest.raises(ConfigError, match="detector.pooling must be mean or mean_std"):
        TransferConfig(**recipe, detector={"pooling": "max"})
    for bad in (1, 2.5, "3"):
        with pytest.raises(ConfigError, match="detector.min_segments must be an integer >= 2"):
            TransferConfig(**recipe, detector={"pooling": "mean_std", "min_segments": bad})


def test_recipe_detector_classes_are_checked():
    from genrekit.training.transfer import TransferConfig

    recipe = {"sources": [{"spec": "gtzan:/nowhere"}]}
    assert TransferConfig(**recipe, detector={"classes": "families"}).detector.classes == "families"
    with pytest.raises(ConfigError, match="detector.classes must be one of"):
        TransferConfig(**recipe, detector={"classes": "kinds"})


def test_labels_named_like_a_tag_get_it_and_gtzan_genres_keep_their_curated_tags_in_any_spelling():
    from genrekit.training.transfer import make_prior

    fma = ["Electronic", "Experimental", "Folk", "Hip-Hop", "International", "Pop", "Rock"]
    msd, both = make_prior("msd", fma), make_prior("both", fma)
    assert msd.genre_tags == {"Electronic": {"MSD_musicnn": ["electronic"]},
                              "Experimental": {"MSD_musicnn": ["experimental"]},
                              "Folk": {"MSD_musicnn": ["folk"]}, "Hip-Hop": {"MSD_musicnn": ["Hip-Hop"]},
                              "International": {}, "Pop": {"MSD_musicnn": ["pop", "indie pop"]},
                              "Rock": {"MSD_musicnn": GENRE_TAGS["rock"]["MSD_musicnn"]}}
    assert both.genre_tags["Electronic"] == {"MSD_musicnn": ["electronic"], "MTT_musicnn": ["electronic"]}
    assert make_prior("msd_proxy", ["Disco", "hip hop"]).genre_tags == {
        "Disco": {"MSD_musicnn": ["dance", "funk"]}, "hip hop": {"MSD_musicnn": ["Hip-Hop"]}}
    assert make_prior("msd_fill", ["Classical"]).genre_tags["Classical"] == {"MTT_musicnn": ["classical", "classic"]}
    folky = {MSD_TAGS: tag_matrix("MSD_musicnn", {"folk": 0.8, "rock": 0.1})}
    assert fma[np.argmax(msd.segment_logits(folky)[0])] == "Folk"


def test_prior_tags_map_the_labels_no_tag_names_and_are_checked():
    from genrekit.training.transfer import HeadSpec, make_prior

    labels = ["Folk", "International", "Soul-RnB"]
    tags = {"Soul-RnB": {"MSD_musicnn": ["soul", "rnb"]}, "Folk": {"MSD_musicnn": ["acoustic"]}}
    prior = make_prior("msd", labels, tags=tags)
    assert prior.genre_tags == {"Folk": {"MSD_musicnn": ["acoustic"]}, "International": {},
                                "Soul-RnB": {"MSD_musicnn": ["soul", "rnb"]}}
    soulful = {MSD_TAGS: tag_matrix("MSD_musicnn", {"rnb": 0.7, "folk": 0.2})}
    assert labels[np.argmax(prior.segment_logits(soulful)[0])] == "Soul-RnB"
    assert TagPrior.from_dict(prior.to_dict(), labels).genre_tags == prior.genre_tags
    with pytest.raises(ConfigError, match=r"genre 'Folk' maps to \['folks'\] which MSD_musicnn does not have"):
        make_prior("msd", labels, tags={"Folk": {"MSD_musicnn": ["folks"]}})
    with pytest.raises(ConfigError, match=r"head.prior_tags\['Folk'\] names \['MTT_musicnn'\]; prior msd reads"):
        HeadSpec(prior="msd", prior_tags={"Folk": {"MTT_musicnn": ["guitar"]}})
    with pytest.raises(ConfigError, match=r"head.prior_tags\['Folk'\] must map networks to lists of tag names"):
        HeadSpec(prior="msd", prior_tags={"Folk": {"MSD_musicnn": "folk"}})
    with pytest.raises(ConfigError, match="head.prior_tags maps labels to tags for the tag prior, and head.prior "
                                          "is null"):
        HeadSpec(prior=None, prior_tags=tags)
