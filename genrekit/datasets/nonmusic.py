"""Generated non-music: noise, tones, sweeps, clicks, hum, speech … labelled ``not_music``.

A genre tagger has no answer for "this is not music": fed white noise, a sine or a click
track it names a genre anyway. This module makes the negatives a music/non-music
detector learns from, rebuildable from the repository alone.

Every clip is a *recipe* (a JSON-able dict of parameters, drawn from a seeded RNG) and
a *rendering* of it (numpy, plus ``espeak-ng`` for speech). The recipe is written to the
manifest, so any clip can be rebuilt from its row: ``render(json.loads(row["params"]))``.

Two sets are made, TRAIN and TEST. They differ by seed (the split name is mixed into
every clip's seed) and by *held-out variety*: each kind draws its main parameters
(frequencies, tempi, voices, words, SNRs, levels …) from alternate bands or list
entries, even ones for train and odd ones for test, so no test clip shares them with a
training clip. Each recipe names these in ``held_out``; the first one is its ``group``.

Imports numpy only; ``soundfile``, ``soxr`` and ``tqdm`` are imported where used.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> y, recipe = generate_clip("tone", rng, sr=16000)
>>> recipe["kind"], y.dtype, len(y) == round(recipe["duration"] * 16000)
('tone', dtype('float32'), True)
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, GenrekitError, MissingProgramError
from ..io import atomic_path, read_json, write_json, write_text

LABEL = "not_music"
SETS = ("train", "test")
KINDS = ("noise", "tone", "sweep", "click", "hiss", "near_silence", "hum", "speech", "speech_noise",
         "telephone", "room_tone", "applause", "alarm")
SPEECH_KINDS = frozenset({"speech", "speech_noise"})
# Kinds that sound alike, for a detector that names the family of non-music it hears (one linear
# boundary between music and all of them lets steady noise pass as distorted guitars).
FAMILIES = {"noise": "steady", "hiss": "steady", "room_tone": "steady", "near_silence": "steady",
            "tone": "tonal", "sweep": "tonal", "hum": "tonal", "alarm": "tonal", "telephone": "tonal",
            "click": "impulses", "applause": "impulses", "speech": "speech", "speech_noise": "speech"}
MIN_SR = 16000
MAX_FREQ = 7000.0  # every frequency a recipe names stays below this, so any sr >= 16 kHz renders it
FULL_BAND_NOISE = 0.4  # share of noise clips with no high cut (None: up to the Nyquist frequency)
ROLLED_OFF_NOISE = 0.3  # share with a gentle high cut (1st, 2nd or 4th order at 1.5-7 kHz) instead
SOURCE_RATES = (16000, 22050, 44100, 48000)  # what full-band noise is rendered at before resampling
RECIPES_VERSION = 2  # 2: full-band, rolled-off, equalised noise; other versions' folders are not mixed in
DURATION = (3.0, 30.0)
ESPEAK = "espeak-ng"
ESPEAK_SR = 22050
MANIFEST_COLUMNS = ("path", "label", "split", "group", "track_id", "kind", "variant", "duration", "params")

# Held-out bands: (low, high, number of bands, log spacing). Even bands are train's, odd test's.
BANDS = {
    "noise_low_cut": (10.0, 160.0, 6, True),
    "noise_band_centre": (100.0, 4000.0, 10, True),
    "tone_freq": (40.0, 4000.0, 12, True),
    "sweep_low": (20.0, 500.0, 6, True),
    "sweep_high": (1000.0, MAX_FREQ, 6, True),
    "tempo_bpm": (40.0, 240.0, 10, False),
    "click_rate": (0.5, 20.0, 8, True),
    "hiss_dbfs": (-70.0, -35.0, 7, False),
    "silence_dbfs": (-85.0, -45.0, 8, False),
    "hum_rolloff": (0.3, 3.0, 6, True),
    "speech_wpm": (90.0, 260.0, 8, False),
    "speech_pitch": (10.0, 90.0, 8, False),
    "snr_db": (0.0, 20.0, 8, False),
    "dtmf_tone_ms": (40.0, 200.0, 6, True),
    "hvac_hz": (25.0, 200.0, 6, True),
    "crowd": (1.0, 300.0, 8, True),
    "siren_period": (0.15, 6.0, 8, True),
    "beep_hz": (700.0, 4000.0, 8, True),
}

NOISE_EXPONENTS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0, "violet": 2.0}
NOISE_COLOURS = (*NOISE_EXPONENTS, "band")

# Voices: alternate entries go to train and test (see _held_out).
ENGLISH_VOICES = ("en-us", "en-029", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-us-nyc",
                  "en-gb-x-gbcwmd", "en-gb-x-rp")
OTHER_VOICES = ("de", "it", "fr-fr", "pt", "es", "nl", "pl", "cs", "sv", "fi", "tr", "id")
VOICE_VARIANTS = ("", "m1", "f1", "f2", "m2", "m3", "f3", "f4", "m4", "m5", "f5", "klatt", "klatt3", "croak",
                  "whisper", "whisperf")

EN_NOUNS = ("river", "window", "garden", "engine", "letter", "bridge", "kitchen", "ladder", "pencil", "market",
            "island", "doctor", "rabbit", "candle", "bottle", "forest", "mirror", "planet", "teacher", "button",
            "harbour", "village", "blanket", "camera", "dinner", "farmer", "jacket", "lemon", "meeting",
            "notebook", "office", "pocket", "question", "report", "station", "ticket", "tunnel", "valley",
            "wallet", "weather")
EN_VERBS = ("opened", "painted", "carried", "followed", "counted", "cleaned", "watched", "answered", "borrowed",
            "checked", "covered", "delivered", "dropped", "fixed", "found", "lifted", "moved", "noticed",
            "ordered", "packed", "pulled", "repaired", "sold", "signed", "started", "stopped", "touched",
            "turned", "visited", "wrapped")
EN_ADJECTIVES = ("quiet", "yellow", "heavy", "narrow", "sudden", "gentle", "broken", "careful", "distant",
                 "early", "famous", "frozen", "hidden", "honest", "little", "modern", "nervous", "ordinary",
                 "patient", "polite", "rapid", "rough", "simple", "sleepy", "strange", "tidy", "useful", "warm",
                 "wooden", "young")
EN_PLACES = ("airport", "library", "school", "hospital", "museum", "bakery", "stadium", "factory", "post office",
             "cinema", "garage", "hotel", "parking lot", "playground", "supermarket", "train station",
             "town hall", "university", "zoo", "swimming pool")
EN_NAMES = ("Anna", "Peter", "Maria", "David", "Sofia", "James", "Laura", "Thomas", "Emma", "Daniel", "Olivia",
            "Martin", "Grace", "Henry", "Chloe", "Oscar", "Ruth", "Samuel", "Alice", "Victor")
EN_TEMPLATES = (
    "The {adj} {noun} {verb} the {noun}.",
    "{name} {verb} a {adj} {noun} near the {place}.",
    "Did you see the {noun} at the {place}?",
    "Tomorrow will be {adj}, with {number} millimetres of rain around the {place}.",
    "Please call {name} before {hour} o'clock about the {noun}.",
    "Yesterday {number} people {verb} the {noun} at the {place}.",
    "Welcome back. Today we talk about the {adj} {noun}, and why {name} {verb} it.",
    "{name} said that the {noun} was {adj}, but nobody {verb} it.",
    "Your call is important to us. Please hold, the {adj} {noun} will be with you shortly.",
    "Step one, take the {noun}. Step two, put it on the {adj} {noun}.",
    "News from the {place}: a {adj} {noun} {verb} {number} tickets.",
    "Is the {noun} really {adj}? {name} thinks so.",
)
# A few common words per language; sentences are random word sequences (speech-like, not grammar).
WORDS = {
    "de": "Haus Wasser Morgen Fenster Stadt gehen schnell heute Brot Straße Abend kommen Garten immer Tisch "
          "sprechen Zeit klein Schule warten Freund dunkel Himmel lesen",
    "fr": "maison eau matin fenêtre ville aller vite aujourd'hui pain rue soir venir jardin toujours table "
          "parler temps petit école attendre ami sombre ciel lire",
    "es": "casa agua mañana ventana ciudad caminar rápido hoy pan calle noche venir jardín siempre mesa hablar "
          "tiempo pequeño escuela esperar amigo oscuro cielo leer",
    "it": "casa acqua mattina finestra città andare veloce oggi pane strada sera venire giardino sempre tavolo "
          "parlare tempo piccolo scuola aspettare amico scuro cielo leggere",
    "pt": "casa água manhã janela cidade andar rápido hoje pão rua noite vir jardim sempre mesa falar tempo "
          "pequeno escola esperar amigo escuro céu ler",
    "nl": "huis water ochtend raam stad lopen snel vandaag brood straat avond komen tuin altijd tafel praten "
          "tijd klein school wachten vriend donker hemel lezen",
    "sv": "hus vatten morgon fönster stad gå snabbt idag bröd gata kväll komma trädgård alltid bord prata tid "
          "liten skola vänta vän mörk himmel läsa",
    "pl": "dom woda rano okno miasto iść szybko dzisiaj chleb ulica wieczór przyjść ogród zawsze stół mówić "
          "czas mały szkoła czekać przyjaciel ciemny niebo czytać",
    "cs": "dům voda ráno okno město jít rychle dnes chléb ulice večer přijít zahrada vždy stůl mluvit čas malý "
          "škola čekat přítel tmavý nebe číst",
    "fi": "talo vesi aamu ikkuna kaupunki kävellä nopeasti tänään leipä katu ilta tulla puutarha aina pöytä "
          "puhua aika pieni koulu odottaa ystävä tumma taivas lukea",
    "tr": "ev su sabah pencere şehir yürümek hızlı bugün ekmek sokak akşam gelmek bahçe daima masa konuşmak "
          "zaman küçük okul beklemek arkadaş karanlık gökyüzü okumak",
    "id": "rumah air pagi jendela kota berjalan cepat sekarang roti jalan malam datang kebun selalu meja "
          "berbicara waktu kecil sekolah menunggu teman gelap langit membaca",
}

# Telephone tone plans (frequencies in Hz; cadences in seconds on, off, …).
TONE_PLANS = (
    {"name": "us", "dial": (350, 440), "busy": ((480, 620), (0.5, 0.5)), "ringback": ((440, 480), (2.0, 4.0))},
    {"name": "uk", "dial": (350, 450), "busy": ((400,), (0.375, 0.375)),
     "ringback": ((400, 450), (0.4, 0.2, 0.4, 2.0))},
    {"name": "de", "dial": (425,), "busy": ((425,), (0.48, 0.48)), "ringback": ((425,), (1.0, 4.0))},
    {"name": "fr", "dial": (440,), "busy": ((440,), (0.5, 0.5)), "ringback": ((440,), (1.5, 3.5))},
    {"name": "jp", "dial": (400,), "busy": ((400,), (0.5, 0.5)), "ringback": ((400, 416), (1.0, 2.0))},
    {"name": "au", "dial": (425, 400), "busy": ((425,), (0.375, 0.375)),
     "ringback": ((400, 450), (0.4, 0.2, 0.4, 2.0))},
)
DTMF_LOW, DTMF_HIGH = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
DTMF_KEYS = "123A456B789C*0#D"


# ---------------------------------------------------------------- public API

def generate_clip(kind: str, rng: np.random.Generator, sr: int = 16000, split: str = "train"):
    """Draw one recipe of ``kind`` for ``split`` from ``rng`` and render it.

    Returns
    -------
    waveform : numpy.ndarray, float32, mono, in [-1, 1]
    params : dict
        The recipe (JSON-able); :func:`render` rebuilds ``waveform`` from it.

    Examples
    --------
    >>> y, params = generate_clip("noise", np.random.default_rng(1))
    >>> params["colour"] in NOISE_COLOURS
    True
    """
    recipe = draw_recipe(kind, rng, split)
    return render(recipe, sr), recipe


def draw_recipe(kind: str, rng: np.random.Generator, split: str = "train") -> dict:
    """The parameters of one clip of ``kind``; held-out varieties come from ``split``'s share.

    Examples
    --------
    >>> r = draw_recipe("click", np.random.default_rng(0), "test")
    >>> r["kind"], r["group"].startswith("click:")
    ('click', True)
    """
    _check_kind(kind)
    _check_split(split)
    recipe = {"kind": kind, "duration": _r(rng.uniform(*DURATION), 2), "seed": int(rng.integers(2**31)),
              "level": _draw_level(rng)}
    recipe.update(_DRAW[kind](rng, split, recipe["duration"]) if kind in SPEECH_KINDS else _DRAW[kind](rng, split))
    name, token = next(iter(recipe["held_out"].items()))
    recipe["group"] = f"{kind}:{name}={token}"
    return recipe


def render(recipe: dict, sr: int = 16000) -> np.ndarray:
    """The waveform of a recipe: float32, mono, ``round(duration * sr)`` samples, in [-1, 1].

    Deterministic: the same recipe and ``sr`` give the same samples (speech: with the
    same espeak-ng version).
    """
    _check_sr(sr)
    _check_kind(recipe.get("kind"))
    n = int(round(recipe["duration"] * sr))
    source_sr = recipe.get("source_sr", sr)
    y = _RENDER[recipe["kind"]](recipe, source_sr, int(round(recipe["duration"] * source_sr)),
                                np.random.default_rng(recipe["seed"]))
    if source_sr != sr:
        import soxr

        y = soxr.resample(np.asarray(y, np.float64), source_sr, sr, quality="HQ")
    y = _fit_length(np.asarray(y, np.float64), n)
    y = _apply_level(y, recipe["level"]) + recipe.get("dc", 0.0)
    return np.clip(y, -1.0, 1.0).astype(np.float32)


def family_of(group: str) -> str:
    """The family of a generated clip from its manifest group (``"noise:low_cut=b2"`` → ``"steady"``);
    ``"other"`` for a group that does not start with a known kind.

    Examples
    --------
    >>> family_of("speech_noise:snr=b3"), family_of("my-recordings")
    ('speech', 'other')
    """
    return FAMILIES.get(str(group).split(":", 1)[0], "other")


def clip_rng(seed: int, split: str, kind: str, index: int) -> np.random.Generator:
    """The RNG of clip ``index`` of ``kind``: independent of the other kinds and clips, so a
    set can be resumed, extended (more clips per kind) or rebuilt one clip at a time."""
    _check_split(split)
    key = (SETS.index(split), zlib.crc32(kind.encode()), int(index))
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))


@dataclass
class NonmusicSummary:
    """What :func:`generate_nonmusic` did. ``os.fspath(summary)`` is the manifest path."""

    manifest: Path
    split: str
    written: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    def __fspath__(self) -> str:
        return str(self.manifest)

    def report(self) -> str:
        per_kind = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        lines = [f"{self.split}: {sum(self.counts.values())} clips ({per_kind}); {self.written} written, "
                 f"{self.skipped} already there, {len(self.failed)} failed, {self.seconds:.1f} s",
                 f"manifest: {self.manifest}"]
        lines += [f"failed: {f['path']}: {f['reason']}" for f in self.failed]
        if self.interrupted:
            lines.append("interrupted: the manifest lists the clips made so far; run again to finish")
        return "\n".join(lines)


def generate_nonmusic(out_dir, n_per_kind: int, seed: int = 0, split: str = "train", kinds=KINDS,
                      sr: int = 16000, overwrite: bool = False, progress: bool = True) -> NonmusicSummary:
    """Write ``n_per_kind`` WAV clips of each kind to ``out_dir`` and a manifest of them.

    Files already there are kept (the recipe is drawn again, cheaply, for the manifest)
    unless ``overwrite``. Each WAV is written atomically, so Ctrl-C leaves no half file:
    it stops, writes the manifest of what is done and returns with ``interrupted``. A
    clip that fails is reported and the others go on.

    Parameters
    ----------
    out_dir : path
        Gets ``KIND/KIND_NNNN.wav``, ``manifest.csv`` (``path,label,split,group,track_id,
        kind,variant,duration,params``; read it with ``manifest:out_dir/manifest.csv``) and
        ``nonmusic.json`` (how the set was made).
    split : {"train", "test"}
        Which share of the held-out varieties to draw from; also mixed into the seeds.

    Examples
    --------
    >>> s = generate_nonmusic("/tmp/nm", 40, seed=0, split="train")  # doctest: +SKIP
    >>> from genrekit.datasets import read_manifest
    >>> read_manifest(s.manifest).labels  # doctest: +SKIP
    ['not_music']
    """
    kinds = _check_request(kinds, n_per_kind, split, sr)
    out_dir = Path(out_dir)
    _claim_folder(out_dir, {"split": split, "seed": int(seed), "sr": int(sr), "recipes": RECIPES_VERSION},
                  overwrite)
    if SPEECH_KINDS & set(kinds):
        require_espeak()
    summary = NonmusicSummary(out_dir / "manifest.csv", split)
    rows, start = [], time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=len(kinds) * n_per_kind, desc=f"non-music ({split})", unit="clip", disable=not progress)
    try:
        for kind in kinds:
            for index in range(n_per_kind):
                row = _make_clip(out_dir, kind, index, seed, split, sr, overwrite, summary)
                if row:
                    rows.append(row)
                    summary.counts[kind] = summary.counts.get(kind, 0) + 1
                bar.update()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        _write_manifest(summary.manifest, rows)
        _write_failures(out_dir / "failures.csv", summary.failed)
        summary.seconds = time.perf_counter() - start
    return summary


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with ``g`` such that mean power(signal) / power(g * noise) = ``snr_db``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(16000), rng.standard_normal(16000)
    >>> round(float(10 * np.log10(np.mean(s**2) / np.mean((mix_at_snr(s, n, 6.0) - s)**2))), 6)
    6.0
    """
    p_signal, p_noise = np.mean(np.square(signal)), np.mean(np.square(noise))
    if p_noise == 0:
        return signal.copy()
    return signal + noise * np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))


def require_espeak() -> str:
    """The espeak-ng version string; raises MissingProgramError (one line) if it is not installed."""
    if not _ESPEAK_VERSION:
        if shutil.which(ESPEAK) is None:
            raise MissingProgramError(f"speech clips need {ESPEAK}: install the Debian package {ESPEAK} "
                                      f"(apt-get install {ESPEAK})")
        out = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, check=False).stdout
        _ESPEAK_VERSION.append(out.split("Data at")[0].strip())
    return _ESPEAK_VERSION[0]


_ESPEAK_VERSION: list[str] = []  # filled by the first successful require_espeak()


def band_of(name: str, value: float) -> int:
    """The index of the held-out band of :data:`BANDS` ``name`` that ``value`` lies in."""
    lo, hi, n, log = BANDS[name]
    edges = _edges(lo, hi, n, log)
    return int(np.clip(np.searchsorted(edges, value, side="right") - 1, 0, n - 1))


# ---------------------------------------------------------------- batch helpers

def _check_request(kinds, n_per_kind, split, sr) -> tuple:
    kinds = tuple(kinds)
    for kind in kinds:
        _check_kind(kind)
    if not kinds:
        raise DatasetError("no kinds of non-music asked for")
    if int(n_per_kind) < 1:
        raise DatasetError(f"clips per kind must be at least 1, not {n_per_kind}")
    _check_split(split)
    _check_sr(sr)
    return kinds


def _claim_folder(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to mix two sets (another split, seed or rate) in one folder; record this one's settings."""
    info_path = out_dir / "nonmusic.json"
    if info_path.is_file() and not overwrite:
        old = read_json(info_path)
        old.setdefault("recipes", 1)  # folders made before the version was recorded
        differ = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if differ:
            said = ", ".join(f"{k} {a} (asked {b})" for k, (a, b) in differ.items())
            raise DatasetError(f"{out_dir}: holds a non-music set made with {said}; "
                               "use another folder or overwrite")
    from .. import __version__

    info = {**settings, "label": LABEL, "genrekit": __version__, "numpy": np.__version__,
            "espeak_ng": shutil.which(ESPEAK) and require_espeak()}
    write_json(info_path, info)


def _make_clip(out_dir, kind, index, seed, split, sr, overwrite, summary) -> dict | None:
    rel = f"{kind}/{kind}_{index:04d}.wav"
    path = out_dir / rel
    try:
        recipe = draw_recipe(kind, clip_rng(seed, split, kind, index), split)
        if path.exists() and not overwrite:
            summary.skipped += 1
        else:
            _write_wav(path, render(recipe, sr), sr)
            summary.written += 1
    except (GenrekitError, OSError, RuntimeError, ValueError) as e:
        summary.failed.append({"path": str(path), "reason": f"{type(e).__name__}: {e}"})
        return None
    return {"path": rel, "label": LABEL, "split": split, "group": recipe["group"],
            "track_id": f"nonmusic-{split}-{kind}-{index:04d}", "kind": kind,
            "variant": recipe.get("variant", ""), "duration": recipe["duration"],
            "params": json.dumps(recipe, ensure_ascii=False, sort_keys=True)}


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(tmp, y, sr, subtype="PCM_16", format="WAV")


def _write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def _write_failures(path: Path, failures: list[dict]) -> None:
    if failures:
        write_text(path, "path,reason\n" + "".join(f'"{f["path"]}","{f["reason"]}"\n' for f in failures))
    elif path.exists():
        path.unlink()


def _check_kind(kind) -> None:
    if kind not in KINDS:
        raise DatasetError(f"unknown kind of non-music {kind!r}; known: {', '.join(KINDS)}")


def _check_split(split) -> None:
    if split not in SETS:
        raise DatasetError(f"a non-music set is 'train' or 'test', not {split!r}")


def _check_sr(sr) -> None:
    if int(sr) < MIN_SR:
        raise DatasetError(f"non-music is made at {MIN_SR} Hz or more (recipes reach {MAX_FREQ:.0f} Hz), not {sr}")


# ---------------------------------------------------------------- drawing helpers

def _r(x: float, digits: int = 3) -> float:
    return round(float(x), digits)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _held_out(options, split: str):
    """The entries of ``options`` that belong to ``split``: even positions train, odd test."""
    return options[SETS.index(split)::2]


def _edges(lo, hi, n, log) -> np.ndarray:
    return np.geomspace(lo, hi, n + 1) if log else np.linspace(lo, hi, n + 1)


def _band_value(rng, name: str, split: str, digits: int = 2) -> tuple[float, str]:
    """A value from one of ``split``'s bands of ``BANDS[name]``, and the band's token."""
    lo, hi, n, log = BANDS[name]
    edges = _edges(lo, hi, n, log)
    band = int(_pick(rng, range(SETS.index(split), n, 2)))
    a, b = (np.log(edges[band]), np.log(edges[band + 1])) if log else (edges[band], edges[band + 1])
    margin = 0.02 * (b - a)  # so rounding never moves a value into the neighbouring (other set's) band
    value = rng.uniform(a + margin, b - margin)
    return _r(np.exp(value) if log else value, digits), f"b{band}"


def _draw_level(rng) -> dict:
    """Mostly ordinary peaks; 10 % right at full scale, 10 % overdriven and hard-clipped."""
    u = rng.random()
    if u < 0.1:
        return {"mode": "clipped", "drive_db": _r(rng.uniform(0.5, 6.0), 2)}
    if u < 0.2:
        return {"mode": "peak", "dbfs": _r(rng.uniform(-0.5, 0.0), 2)}
    return {"mode": "peak", "dbfs": _r(rng.uniform(-30.0, -1.0), 2)}


def _rms_level(dbfs: float) -> dict:
    return {"mode": "rms", "dbfs": dbfs}


# ---------------------------------------------------------------- recipes, kind by kind

def _draw_noise(rng, split) -> dict:
    colour = _pick(rng, NOISE_COLOURS)
    if colour == "band":
        centre, token = _band_value(rng, "noise_band_centre", split, 1)
        width = rng.uniform(0.3, 3.0)
        low, high = centre / 2 ** (width / 2), min(centre * 2 ** (width / 2), MAX_FREQ)
        return {"variant": "band", "colour": "band", "low_hz": _r(low, 1), "high_hz": _r(high, 1),
                "exponent": 0.0, "held_out": {"band_centre": token}}
    low, token = _band_value(rng, "noise_low_cut", split, 1)
    recipe = {"variant": colour, "colour": colour, "exponent": NOISE_EXPONENTS[colour], "low_hz": low,
              "high_hz": _r(rng.uniform(5000.0, MAX_FREQ), 1), "held_out": {"low_cut": token}}
    # Noise in a music library comes from a generator or an app at a common file rate, often through a
    # filter or an equaliser, and is resampled by the loader. With only brick-wall cuts at 5-7 kHz in
    # this set, the detector let full-band pink noise from a 44.1 kHz file through as "metal".
    shape = rng.random()
    if shape < FULL_BAND_NOISE:
        recipe.update(high_hz=None, source_sr=int(_pick(rng, SOURCE_RATES)))
    elif shape < FULL_BAND_NOISE + ROLLED_OFF_NOISE:
        recipe.update(high_hz=None, source_sr=int(_pick(rng, SOURCE_RATES)),
                      rolloff_hz=_r(np.exp(rng.uniform(np.log(1500.0), np.log(MAX_FREQ))), 1),
                      rolloff_order=int(_pick(rng, (1, 2, 4))))
    if rng.random() < 0.5:
        recipe["eq"] = [[_r(np.exp(rng.uniform(np.log(100.0), np.log(6000.0))), 1), _r(rng.uniform(-9.0, 9.0), 2),
                         _r(rng.uniform(0.5, 3.0), 2)] for _ in range(int(rng.integers(1, 4)))]
    return recipe


def _draw_tone(rng, split) -> dict:
    wave = _pick(rng, ("sine", "square", "saw", "triangle"))
    n_tones = int(_pick(rng, (1, 1, 1, 2, 3)))
    drawn = [_band_value(rng, "tone_freq", split, 2) for _ in range(n_tones)]
    harmonics = int(rng.integers(1, 9)) if wave == "sine" and rng.random() < 0.5 else 0
    return {"variant": wave, "wave": wave, "freqs": [f for f, _ in drawn],
            "amps": [_r(rng.uniform(0.3, 1.0)) for _ in drawn], "harmonics": harmonics,
            "rolloff": _r(rng.uniform(0.5, 2.5), 2), "held_out": {"freq": drawn[0][1]}}


def _draw_sweep(rng, split) -> dict:
    low, low_token = _band_value(rng, "sweep_low", split, 1)
    high, high_token = _band_value(rng, "sweep_high", split, 1)
    method = _pick(rng, ("linear", "log"))
    direction = _pick(rng, ("up", "down"))
    return {"variant": f"{method}_{direction}", "method": method, "direction": direction, "low_hz": low,
            "high_hz": high, "sweeps": int(rng.integers(1, 5)), "gap_s": _r(rng.uniform(0.0, 1.0), 2),
            "held_out": {"low": low_token, "high": high_token}}


def _draw_click(rng, split) -> dict:
    variant = _pick(rng, ("metronome", "metronome", "impulses", "random"))
    if variant == "metronome":
        bpm, token = _band_value(rng, "tempo_bpm", split, 1)
        return {"variant": variant, "bpm": bpm, "beats_per_bar": int(_pick(rng, (2, 3, 4, 4, 6))),
                "accent": bool(rng.random() < 0.6), "sound": _pick(rng, ("beep", "tick")),
                "click_hz": _r(rng.uniform(800.0, 3000.0), 1), "decay_ms": _r(rng.uniform(3.0, 30.0), 1),
                "held_out": {"tempo": token}}
    rate, token = _band_value(rng, "click_rate", split, 3)
    return {"variant": variant, "rate_hz": rate, "polarity": _pick(rng, ("positive", "negative", "both")),
            "held_out": {f"{variant}_rate": token}}


def _draw_hiss(rng, split) -> dict:
    dbfs, token = _band_value(rng, "hiss_dbfs", split, 2)
    recipe = {"variant": _pick(rng, ("tape", "vinyl", "preamp")), "shelf_hz": _r(rng.uniform(2000, 6000), 1),
              "shelf_db": _r(rng.uniform(0.0, 8.0), 2), "high_cut_hz": _r(rng.uniform(5000, MAX_FREQ), 1),
              "wow_db": _r(rng.uniform(0.0, 3.0), 2), "wow_hz": _r(rng.uniform(0.2, 2.0), 3),
              "crackle_per_s": _r(rng.uniform(2.0, 30.0), 2), "mains_hz": int(_pick(rng, (50, 60))),
              "hum_db": _r(rng.uniform(-25.0, -10.0), 2), "held_out": {"level": token}}
    recipe["level"] = _rms_level(dbfs)
    return recipe


def _draw_near_silence(rng, split) -> dict:
    dbfs, token = _band_value(rng, "silence_dbfs", split, 2)
    variant = _pick(rng, ("floor", "dc", "hum"))
    recipe = {"variant": variant, "colour": _pick(rng, ("white", "pink")), "mains_hz": int(_pick(rng, (50, 60))),
              "harmonics": int(rng.integers(1, 11)), "rolloff": _r(rng.uniform(0.3, 2.0), 2),
              "floor_db": _r(rng.uniform(-30.0, -10.0), 2), "level": _rms_level(dbfs),
              "held_out": {f"{variant}_level": token}}
    if variant == "dc":
        recipe["dc"] = _r(_pick(rng, (-1, 1)) * rng.uniform(0.0005, 0.02), 5)
    return recipe


def _draw_hum(rng, split) -> dict:
    rolloff, token = _band_value(rng, "hum_rolloff", split, 3)
    variant = _pick(rng, ("mains", "buzz", "transformer"))
    mains = int(_pick(rng, (50, 60)))
    return {"variant": variant, "fundamental_hz": mains * (1 if variant == "mains" else 2),
            "harmonics": int(rng.integers(1, 6) if variant == "transformer" else rng.integers(4, 40)),
            "odd_only": bool(variant == "buzz" and rng.random() < 0.5), "rolloff": rolloff,
            "noise_db": _r(rng.uniform(-50.0, -15.0), 2), "held_out": {"rolloff": token}}


def _draw_speech(rng, split, duration: float) -> dict:
    english = rng.random() < 0.5
    language = _pick(rng, _held_out(ENGLISH_VOICES if english else OTHER_VOICES, split))
    variant = _pick(rng, _held_out(VOICE_VARIANTS, split))
    wpm, wpm_token = _band_value(rng, "speech_wpm", split, 0)
    pitch, pitch_token = _band_value(rng, "speech_pitch", split, 0)
    voice = language + (f"+{variant}" if variant else "")
    sentences, pauses = _draw_text(rng, language, split, wpm, duration)
    return {"variant": "english" if english else "other", "voice": voice, "wpm": int(wpm), "pitch": int(pitch),
            "word_gap": int(rng.integers(0, 4)), "lead_in_s": _r(rng.uniform(0.0, 1.0), 2),
            "sentences": sentences, "pauses_ms": pauses, "floor_db": _r(rng.uniform(-75.0, -45.0), 2),
            "held_out": {"voice": voice, "wpm": wpm_token, "pitch": pitch_token}}


def _draw_speech_noise(rng, split, duration: float) -> dict:
    speech = _draw_speech(rng, split, duration)
    snr, snr_token = _band_value(rng, "snr_db", split, 2)
    noise = _pick(rng, ("white", "pink", "brown", "hum", "room"))
    return {"variant": noise, "speech": {**speech, "seed": int(rng.integers(2**31))}, "noise": noise,
            "snr_db": snr, "mains_hz": int(_pick(rng, (50, 60))),
            "held_out": {"voice": speech["held_out"]["voice"], "snr": snr_token}}


def _draw_text(rng, language: str, split: str, wpm: float, duration: float) -> tuple[list, list]:
    """Sentences (and the pauses after them) for at least ``duration`` seconds at ``wpm``."""
    sentences, pauses, seconds = [], [], 0.0
    while seconds < duration * 1.3 + 2:
        sentence = _english_sentence(rng, split) if language.startswith("en") else _word_sentence(rng, language, split)
        pause = int(rng.integers(200, 1500))
        sentences.append(sentence)
        pauses.append(pause)
        seconds += len(sentence.split()) * 60.0 / wpm + pause / 1000
    return sentences, pauses


def _english_sentence(rng, split: str) -> str:
    fields = {"noun": EN_NOUNS, "verb": EN_VERBS, "adj": EN_ADJECTIVES, "place": EN_PLACES, "name": EN_NAMES}
    template = _pick(rng, _held_out(EN_TEMPLATES, split))
    parts = template.split("{")
    out = [parts[0]]
    for part in parts[1:]:
        slot, rest = part.split("}", 1)
        if slot == "number":
            word = str(int(rng.integers(2, 1000)))
        elif slot == "hour":
            word = str(int(rng.integers(1, 13)))
        else:
            word = _pick(rng, _held_out(fields[slot], split))
        out.append(word + rest)
    return "".join(out)


def _word_sentence(rng, language: str, split: str) -> str:
    words = _held_out(WORDS[language.split("-")[0]].split(), split)
    chosen = [_pick(rng, words) for _ in range(int(rng.integers(3, 11)))]
    return " ".join(chosen).capitalize() + _pick(rng, (".", ".", ".", "?", "!"))


def _draw_telephone(rng, split) -> dict:
    variant = _pick(rng, ("dtmf", "dtmf", "dial", "busy", "ringback", "modem"))
    if variant == "dtmf":
        tone_ms, token = _band_value(rng, "dtmf_tone_ms", split, 1)
        digits = "".join(_pick(rng, DTMF_KEYS) for _ in range(int(rng.integers(4, 40))))
        return {"variant": variant, "digits": digits, "tone_ms": tone_ms, "gap_ms": _r(rng.uniform(40, 300), 1),
                "pause_every": int(rng.integers(3, 8)), "pause_ms": _r(rng.uniform(300, 1500), 1),
                "twist_db": _r(rng.uniform(-4.0, 4.0), 2), "held_out": {"dtmf_tone": token}}
    if variant == "modem":
        signal = _pick(rng, _held_out(("answer_2100", "calling_1100", "answer_phase_reversal", "busy_fax"), split))
        return {"variant": variant, "signal": signal, "held_out": {"modem": signal}}
    plan = _pick(rng, _held_out(TONE_PLANS, split))
    return {"variant": variant, "plan": plan["name"], "held_out": {"plan": plan["name"]}}


def _draw_room_tone(rng, split) -> dict:
    hvac, token = _band_value(rng, "hvac_hz", split, 2)
    recipe = {"variant": _pick(rng, ("office", "hall", "home")), "colour": _pick(rng, ("pink", "brown")),
              "hvac_hz": hvac, "hvac_db": _r(rng.uniform(-30.0, -6.0), 2), "harmonics": int(rng.integers(1, 5)),
              "knocks_per_s": _r(rng.uniform(0.0, 0.3), 3), "knock_db": _r(rng.uniform(-20.0, 0.0), 2),
              "held_out": {"hvac": token}}
    recipe["level"] = _rms_level(_r(rng.uniform(-60.0, -30.0), 2))
    return recipe


def _draw_applause(rng, split) -> dict:
    crowd, token = _band_value(rng, "crowd", split, 1)
    return {"variant": "single" if crowd < 2 else "crowd", "people": max(1, int(round(crowd))),
            "claps_per_s": _r(rng.uniform(2.0, 5.0), 2), "attack_s": _r(rng.uniform(0.1, 2.0), 2),
            "release_s": _r(rng.uniform(0.5, 4.0), 2), "cheer_db": _r(rng.uniform(-40.0, -6.0), 2),
            "centre_hz": _r(rng.uniform(700.0, 2500.0), 1), "held_out": {"crowd": token}}


def _draw_alarm(rng, split) -> dict:
    variant = _pick(rng, ("siren", "beeper", "smoke", "phone_ring"))
    if variant == "siren":
        period, token = _band_value(rng, "siren_period", split, 3)
        low = rng.uniform(450.0, 800.0)
        return {"variant": variant, "period_s": period, "low_hz": _r(low, 1),
                "high_hz": _r(low * rng.uniform(1.6, 2.6), 1), "wave": _pick(rng, ("sine", "square")),
                "held_out": {"siren_period": token}}
    freq, token = _band_value(rng, "beep_hz", split, 1)
    return {"variant": variant, "freq_hz": freq, "on_s": _r(rng.uniform(0.08, 1.0), 3),
            "off_s": _r(rng.uniform(0.08, 1.0), 3), "ring_mod_hz": _r(rng.uniform(15.0, 25.0), 2),
            "held_out": {f"{variant}_freq": token}}


# ---------------------------------------------------------------- rendering helpers

def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    return y[:n] if len(y) >= n else np.pad(y, (0, n - len(y)))


def _apply_level(y: np.ndarray, level: dict) -> np.ndarray:
    y = y - np.mean(y) if level["mode"] == "rms" else y
    peak, rms = np.max(np.abs(y)), np.sqrt(np.mean(np.square(y)))
    if peak == 0:
        return y
    if level["mode"] == "rms":
        return y * (10 ** (level["dbfs"] / 20) / rms)
    if level["mode"] == "peak":
        return y * (10 ** (level["dbfs"] / 20) / peak)
    return np.clip(y / peak * 10 ** (level["drive_db"] / 20), -1.0, 1.0)


def _shaped_noise(rng, n: int, sr: int, exponent: float = 0.0, low: float = 0.0, high: float | None = None,
                  gain=None) -> np.ndarray:
    """Gaussian noise whose power spectrum goes as f**exponent between ``low`` and ``high`` Hz.

    Pink is -1 (-3 dB/octave), brown -2 (-6 dB/octave), blue +1, violet +2. Shaped in
    one FFT of the whole clip, so the slope is exact down to ``low`` (at least 1 Hz).
    """
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    shape = (np.maximum(freqs, max(low, 1.0)) / 1000.0) ** (exponent / 2)
    shape[(freqs < low) | (freqs > (high or sr / 2)) | (freqs == 0)] = 0.0
    if gain is not None:
        shape *= gain(freqs)
    return np.fft.irfft(spectrum * shape, n)


def _harmonic_series(f0: float, t: np.ndarray, harmonics: int, rolloff: float, odd_only: bool = False,
                     phase: float = 0.0) -> np.ndarray:
    """Sum of sines at k*f0 (k = 1 … harmonics+1, odd only if asked) with amplitudes 1/k**rolloff."""
    y = np.zeros_like(t)
    for k in range(1, harmonics + 2):
        if k * f0 >= MAX_FREQ or (odd_only and k % 2 == 0):
            continue
        y += np.sin(2 * np.pi * k * f0 * t + phase * k) / k ** rolloff
    return y


def _gate(t: np.ndarray, cadence, ramp_s: float = 0.003) -> np.ndarray:
    """1 where a repeating on/off cadence (seconds: on, off, on, off …) is on, else 0, with
    ``ramp_s`` linear edges (a real tone generator does not switch with a click)."""
    edges = np.cumsum(cadence)
    position = np.mod(t, edges[-1])
    segment = np.searchsorted(edges, position, side="right")
    gate = (segment % 2 == 0).astype(np.float64)
    width = max(1, int(ramp_s / (t[1] - t[0]))) if len(t) > 1 else 1
    return np.convolve(gate, np.ones(width) / width, "same")


def _bursts(times: np.ndarray, amps: np.ndarray, kernel: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Copies of ``kernel`` starting at ``times`` (s) with gains ``amps``, by FFT convolution."""
    impulses = np.zeros(n)
    idx = (np.asarray(times) * sr).astype(int)
    inside = (idx >= 0) & (idx < n)
    np.add.at(impulses, idx[inside], np.broadcast_to(amps, idx.shape)[inside])
    size = n + len(kernel)
    return np.fft.irfft(np.fft.rfft(impulses, size) * np.fft.rfft(kernel, size), size)[:n]


def _decaying(rng, sr: int, ms: float, freq: float | None = None) -> np.ndarray:
    """A click: a sine burst (``freq``) or a noise burst with an exponential decay of ``ms``."""
    t = _time(max(1, int(sr * ms * 5 / 1000)), sr)
    body = np.sin(2 * np.pi * freq * t) if freq else rng.standard_normal(len(t))
    return body * np.exp(-t / (ms / 1000))


# ---------------------------------------------------------------- rendering, kind by kind

def _render_noise(r, sr, n, rng):
    return _shaped_noise(rng, n, sr, r["exponent"], r["low_hz"], r["high_hz"], lambda f: _filter_gain(r, f))


def _filter_gain(r: dict, freqs: np.ndarray) -> np.ndarray:
    """The amplitude response of a recipe's gentle high cut (Butterworth-like) and equaliser bells."""
    gain = np.ones_like(freqs)
    if r.get("rolloff_hz"):
        gain /= np.sqrt(1.0 + (freqs / r["rolloff_hz"]) ** (2 * r["rolloff_order"]))
    for centre, gain_db, width in r.get("eq", ()):
        octaves = np.log2(np.maximum(freqs, 1.0) / centre) / (width / 2)
        gain *= 10 ** (gain_db / 20 * np.exp(-np.log(2) * octaves ** 2))  # half the dB gain at +-width/2
    return gain


def _render_tone(r, sr, n, rng):
    t = _time(n, sr)
    partials = {"sine": (r["harmonics"], r["rolloff"], False), "square": (39, 1.0, True),
                "saw": (39, 1.0, False), "triangle": (39, 2.0, True)}[r["wave"]]
    y = sum(a * _harmonic_series(f, t, *partials, phase=rng.uniform(0, 2 * np.pi))
            for f, a in zip(r["freqs"], r["amps"]))
    return y * _fades(n, sr, 0.01)


def _fades(n: int, sr: int, seconds: float) -> np.ndarray:
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / max(1, seconds * sr))
    return ramp


def _render_sweep(r, sr, n, rng):
    f0, f1 = (r["low_hz"], r["high_hz"]) if r["direction"] == "up" else (r["high_hz"], r["low_hz"])
    period = n / r["sweeps"]
    sweep_n = max(1, int(period - r["gap_s"] * sr)) if period > r["gap_s"] * sr * 2 else int(period)
    t = _time(sweep_n, sr)
    length = sweep_n / sr
    if r["method"] == "linear":
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * length))
    else:
        k = f1 / f0
        phase = 2 * np.pi * f0 * length / np.log(k) * (k ** (t / length) - 1)
    one = np.sin(phase) * _fades(sweep_n, sr, 0.005)
    y = np.zeros(n)
    for i in range(r["sweeps"]):
        start = int(i * period)
        stop = min(n, start + sweep_n)
        y[start:stop] = one[:stop - start]
    return y


def _render_click(r, sr, n, rng):
    seconds = n / sr
    if r["variant"] == "metronome":
        beat = 60.0 / r["bpm"]
        times = np.arange(0.0, seconds, beat)
        amps = np.where(np.arange(len(times)) % r["beats_per_bar"] == 0, 1.0, 0.6 if r["accent"] else 1.0)
        kernel = _decaying(rng, sr, r["decay_ms"], r["click_hz"] if r["sound"] == "beep" else None)
        return _bursts(times, amps, kernel, n, sr)
    if r["variant"] == "impulses":
        times = np.arange(0.0, seconds, 1.0 / r["rate_hz"])
    else:
        times = np.sort(rng.uniform(0.0, seconds, rng.poisson(r["rate_hz"] * seconds)))
    amps = {"positive": np.ones(len(times)), "negative": -np.ones(len(times)),
            "both": rng.choice([-1.0, 1.0], len(times))}[r["polarity"]]
    if r["variant"] == "random":
        amps = amps * rng.uniform(0.2, 1.0, len(times))
    return _bursts(times, amps, np.ones(1), n, sr)


def _render_hiss(r, sr, n, rng):
    def tape_gain(freqs):
        shelf = 1 + (10 ** (r["shelf_db"] / 20) - 1) / (1 + np.exp(-(freqs - r["shelf_hz"]) / 500.0))
        return shelf / (1 + (freqs / r["high_cut_hz"]) ** 8)

    y = _shaped_noise(rng, n, sr, 0.0, 20.0, None, tape_gain)
    t = _time(n, sr)
    y *= 10 ** (r["wow_db"] / 20 * np.sin(2 * np.pi * r["wow_hz"] * t))
    rms = np.sqrt(np.mean(y ** 2))
    if r["variant"] == "vinyl":
        seconds = n / sr
        times = rng.uniform(0, seconds, rng.poisson(r["crackle_per_s"] * seconds))
        crackle = _bursts(times, rng.standard_normal(len(times)) * 4 * rms, _decaying(rng, sr, 0.3), n, sr)
        rumble = _shaped_noise(rng, n, sr, -2.0, 5.0, 40.0)
        y = y + crackle + rumble / np.sqrt(np.mean(rumble ** 2)) * rms * 0.5
    elif r["variant"] == "preamp":
        y = y + _harmonic_series(r["mains_hz"], t, 3, 1.0) * rms * 10 ** (r["hum_db"] / 20)
    return y


def _render_near_silence(r, sr, n, rng):
    floor = _shaped_noise(rng, n, sr, NOISE_EXPONENTS[r["colour"]], 20.0)
    floor /= np.sqrt(np.mean(floor ** 2))
    if r["variant"] != "hum":
        return floor
    hum = _harmonic_series(r["mains_hz"], _time(n, sr), r["harmonics"], r["rolloff"])
    return hum / np.sqrt(np.mean(hum ** 2)) + floor * 10 ** (r["floor_db"] / 20)


def _render_hum(r, sr, n, rng):
    t = _time(n, sr)
    y = _harmonic_series(r["fundamental_hz"], t, r["harmonics"], r["rolloff"], r["odd_only"])
    y /= np.sqrt(np.mean(y ** 2))
    return y + _unit(_shaped_noise(rng, n, sr, -1.0, 20.0)) * 10 ** (r["noise_db"] / 20)


def _render_speech(r, sr, n, rng):
    require_espeak()
    import soundfile as sf
    import soxr

    ssml = "<speak>" + "".join(f'{_xml(s)} <break time="{p}ms"/> ' for s, p in
                               zip(r["sentences"], r["pauses_ms"])) + "</speak>"
    cmd = [ESPEAK, "-m", "--stdin", "--stdout", "-v", r["voice"], "-s", str(r["wpm"]), "-p", str(r["pitch"]),
           "-g", str(r["word_gap"])]
    done = subprocess.run(cmd, input=ssml.encode(), capture_output=True, check=False)
    if done.returncode != 0 or len(done.stdout) < 100:
        raise DatasetError(f"{ESPEAK} -v {r['voice']} failed: {done.stderr.decode(errors='replace').strip()}")
    speech, speech_sr = sf.read(io.BytesIO(done.stdout), dtype="float64")
    speech = soxr.resample(speech, speech_sr, sr) if speech_sr != sr else speech
    speech = np.concatenate([np.zeros(int(r["lead_in_s"] * sr)), speech / (np.max(np.abs(speech)) or 1.0)])
    speech = _fit_length(speech, n)
    return speech + rng.standard_normal(n) * 10 ** (r["floor_db"] / 20)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _render_speech_noise(r, sr, n, rng):
    speech = _render_speech(r["speech"], sr, n, np.random.default_rng(r["speech"]["seed"]))
    if r["noise"] in NOISE_EXPONENTS:
        noise = _shaped_noise(rng, n, sr, NOISE_EXPONENTS[r["noise"]], 20.0)
    else:
        noise = _harmonic_series(r["mains_hz"], _time(n, sr), 6, 1.0)
        if r["noise"] == "room":
            noise = noise / np.sqrt(np.mean(noise ** 2)) * 0.3 + _unit(_shaped_noise(rng, n, sr, -2.0, 20.0))
    return mix_at_snr(speech, noise, r["snr_db"])


def _unit(y: np.ndarray) -> np.ndarray:
    return y / (np.sqrt(np.mean(y ** 2)) or 1.0)


def _render_telephone(r, sr, n, rng):
    t = _time(n, sr)
    if r["variant"] == "dtmf":
        return _dtmf(r, t, sr, n)
    if r["variant"] == "modem":
        return _modem(r["signal"], t)
    plan = next(p for p in TONE_PLANS if p["name"] == r["plan"])
    if r["variant"] == "dial":
        return sum(np.sin(2 * np.pi * f * t) for f in plan["dial"])
    freqs, cadence = plan[r["variant"]]
    return sum(np.sin(2 * np.pi * f * t) for f in freqs) * _gate(t, cadence)


def _dtmf(r, t, sr, n):
    y = np.zeros(n)
    start = 0.0
    tone_s, gap_s = r["tone_ms"] / 1000, r["gap_ms"] / 1000
    twist = 10 ** (r["twist_db"] / 20)
    while start < t[-1]:
        for i, key in enumerate(r["digits"]):
            a, b = int(start * sr), min(n, int((start + tone_s) * sr))
            row, col = divmod(DTMF_KEYS.index(key), 4)
            pair = np.sin(2 * np.pi * DTMF_LOW[row] * t[a:b]) + twist * np.sin(2 * np.pi * DTMF_HIGH[col] * t[a:b])
            y[a:b] = pair * _fades(b - a, sr, 0.003)
            start += tone_s + gap_s + (r["pause_ms"] / 1000 if (i + 1) % r["pause_every"] == 0 else 0.0)
            if start >= t[-1]:
                break
        start += 2 * r["pause_ms"] / 1000
    return y


def _modem(signal: str, t: np.ndarray) -> np.ndarray:
    if signal == "answer_2100":
        return np.sin(2 * np.pi * 2100 * t)
    if signal == "answer_phase_reversal":
        flips = np.pi * (np.floor(t / 0.45) % 2)
        return np.sin(2 * np.pi * 2100 * t + flips) * (1 + 0.2 * np.sin(2 * np.pi * 15 * t))
    if signal == "calling_1100":
        return np.sin(2 * np.pi * 1100 * t) * _gate(t, (0.5, 3.0))
    return np.sin(2 * np.pi * 1100 * t) * _gate(t, (0.5, 0.5)) + 0.5 * np.sin(2 * np.pi * 1800 * t) * _gate(t, (3.0, 1.0))


def _render_room_tone(r, sr, n, rng):
    bed = _unit(_shaped_noise(rng, n, sr, NOISE_EXPONENTS[r["colour"]], 15.0, 6000.0))
    hvac = _unit(_harmonic_series(r["hvac_hz"], _time(n, sr), r["harmonics"], 1.0))
    seconds = n / sr
    times = rng.uniform(0, seconds, rng.poisson(r["knocks_per_s"] * seconds))
    knocks = _bursts(times, rng.uniform(0.3, 1.0, len(times)) * 10 ** (r["knock_db"] / 20) * 3,
                     _decaying(rng, sr, 15.0, rng.uniform(80, 300)), n, sr)
    return bed + hvac * 10 ** (r["hvac_db"] / 20) + knocks


def _render_applause(r, sr, n, rng):
    seconds = n / sr
    if r["people"] == 1:
        times = np.cumsum(rng.normal(1 / r["claps_per_s"], 0.03 / r["claps_per_s"], int(seconds * r["claps_per_s"]) + 2))
    else:
        times = rng.uniform(0, seconds, rng.poisson(r["people"] * r["claps_per_s"] * seconds))
    claps = _bursts(times, rng.uniform(0.3, 1.0, len(times)), _decaying(rng, sr, rng.uniform(3.0, 10.0)), n, sr)
    claps = _shaped_noise_filter(claps, sr, r["centre_hz"])
    cheer = _unit(_shaped_noise(rng, n, sr, -1.0, 300.0, 3000.0)) * np.sqrt(np.mean(claps ** 2))
    t = _time(n, sr)
    envelope = np.minimum(1.0, t / r["attack_s"]) * np.clip((seconds - t) / r["release_s"], 0.0, 1.0)
    return (claps + cheer * 10 ** (r["cheer_db"] / 20)) * envelope


def _shaped_noise_filter(y: np.ndarray, sr: int, centre: float) -> np.ndarray:
    """A broad band-pass (two octaves either side of ``centre``) in the frequency domain."""
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    gain = 1 / (1 + (np.log2(np.maximum(freqs, 1.0) / centre) / 2) ** 4)
    return np.fft.irfft(np.fft.rfft(y) * gain, len(y))


def _render_alarm(r, sr, n, rng):
    t = _time(n, sr)
    if r["variant"] == "siren":
        centre, depth = (r["high_hz"] + r["low_hz"]) / 2, (r["high_hz"] - r["low_hz"]) / 2
        # phase of a tone whose frequency swings sinusoidally between low_hz and high_hz
        phase = 2 * np.pi * (centre * t - depth * r["period_s"] / (2 * np.pi) * np.cos(2 * np.pi * t / r["period_s"]))
        return np.sin(phase) if r["wave"] == "sine" else np.sign(np.sin(phase)) * 0.5
    tone = np.sin(2 * np.pi * r["freq_hz"] * t)
    if r["variant"] == "smoke":
        return tone * _gate(t, (0.5, 0.5, 0.5, 0.5, 0.5, 1.5))
    if r["variant"] == "phone_ring":
        ring = 0.5 + 0.5 * np.sin(2 * np.pi * r["ring_mod_hz"] * t)
        return tone * ring * _gate(t, (2.0, 4.0))
    return tone * _gate(t, (r["on_s"], r["off_s"]))


_DRAW = {"noise": _draw_noise, "tone": _draw_tone, "sweep": _draw_sweep, "click": _draw_click,
         "hiss": _draw_hiss, "near_silence": _draw_near_silence, "hum": _draw_hum, "speech": _draw_speech,
         "speech_noise": _draw_speech_noise, "telephone": _draw_telephone, "room_tone": _draw_room_tone,
         "applause": _draw_applause, "alarm": _draw_alarm}
_RENDER = {"noise": _render_noise, "tone": _render_tone, "sweep": _render_sweep, "click": _render_click,
           "hiss": _render_hiss, "near_silence": _render_near_silence, "hum": _render_hum,
           "speech": _render_speech, "speech_noise": _render_speech_noise, "telephone": _render_telephone,
           "room_tone": _render_room_tone, "applause": _render_applause, "alarm": _render_alarm}
