"""Data set readers on the real data (../shared/data) and on small trees made here."""
from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from genrekit.datasets import (
    Dataset,
    Track,
    assign_splits,
    check_disjoint,
    fma_audio_path,
    group_credits,
    id3_artist,
    load_fma_metadata,
    normalise_split,
    open_dataset,
    read_fma,
    read_folder,
    read_gtzan,
    read_manifest,
)
from genrekit.datasets.base import check_split, credit_names, name_key
from genrekit.errors import DatasetError, LeakageError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRACKS_CSV = FIXTURES / "fma_tracks_small.csv"


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- GTZAN -----------------------------------------------------------------------------

def read_label_csv(shared_data) -> dict[str, dict]:
    with open(shared_data / "gtzan_labels.csv", newline="") as f:
        return {row["track_id"]: row for row in csv.DictReader(f)}


def gtzan_files(root: Path) -> dict[str, Path]:
    """track_id -> file of every GTZAN-named audio file (.wav or .au) in its genre folder under root."""
    found = {}
    for path in sorted(root.rglob("*")):
        genre, _, rest = path.name.partition(".")
        if path.suffix in (".wav", ".au") and path.parent.name == genre and rest[:5].isdigit():
            found.setdefault(path.stem, path)
    return found


def test_gtzan_with_split_csv(shared_data):
    """Every track of the label CSV is found at its path with its genre and split, and
    nothing else: checked against the CSV and the files, not a count that changes."""
    labels = read_label_csv(shared_data)
    ds = open_dataset(f"gtzan:{shared_data}", splits=shared_data / "gtzan_labels.csv")
    assert {t.track_id for t in ds.tracks} == set(labels) == set(gtzan_files(shared_data))
    assert len(ds.tracks) == len(labels)  # each once
    assert not ds.notes  # every track has a split, none was assigned
    for t in ds.tracks:
        row = labels[t.track_id]
        assert t.label == row["genre"] == t.track_id.split(".")[0]
        assert t.split == normalise_split(row["filtered_split"])
        assert Path(t.path) == shared_data / row["path"] == gtzan_files(shared_data)[t.track_id]
        assert t.artist is None
    expected = Counter(normalise_split(r["filtered_split"]) for r in labels.values())
    assert Counter(t.split for t in ds.tracks) == expected
    assert set(expected) <= {"train", "valid", "test", "excluded"}
    assert ds.labels == sorted({r["genre"] for r in labels.values()})
    assert ds.describe()["splits"] == dict(sorted(expected.items()))


def test_gtzan_without_splits_gets_split_by_track(shared_data):
    root = shared_data / "gtzan"
    ds = open_dataset(f"gtzan:{root}", seed=3)
    files = gtzan_files(root)
    assert {t.track_id: Path(t.path) for t in ds.tracks} == files and len(ds.tracks) == len(files)
    assert any(p.suffix == ".au" for p in files.values())  # the .au files are read too
    assert {t.split for t in ds.tracks} == {"train", "valid", "test"}
    assert "seed 3" in ds.notes[-1]
    again = open_dataset(f"gtzan:{root}", seed=3)
    assert [t.split for t in again.tracks] == [t.split for t in ds.tracks]


def test_gtzan_tree_rules(tmp_path):
    touch(tmp_path / "a" / "rock" / "rock.00001.wav")
    touch(tmp_path / "b" / "rock" / "rock.00001.wav")  # same track id again: kept once
    touch(tmp_path / "a" / "jazz" / "jazz.00002.au")
    touch(tmp_path / "a" / "jazz" / "rock.00003.wav")  # in the wrong genre folder: ignored
    touch(tmp_path / "a" / "jazz" / "cover.jpg")
    ds = read_gtzan(tmp_path, splits={"rock.00001": "test"})
    assert [(t.track_id, t.label, t.split) for t in ds.tracks] == [("jazz.00002", "jazz", None),
                                                                     ("rock.00001", "rock", "test")]
    assert ds.tracks[1].path == str(tmp_path / "a" / "rock" / "rock.00001.wav")
    assert any("duplicate rock.00001" in note for note in ds.notes)


def test_gtzan_bad_inputs(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        read_gtzan(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no tracks found"):
        read_gtzan(tmp_path / "empty")
    touch(tmp_path / "g" / "rock" / "rock.00001.wav")
    with pytest.raises(DatasetError, match="split file not found"):
        read_gtzan(tmp_path / "g", splits=tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,fold\nrock.00001,1\n")
    with pytest.raises(DatasetError, match="needs columns"):
        read_gtzan(tmp_path / "g", splits=bad)


# --- FMA -------------------------------------------------------------------------------

def test_fma_with_label_csv(shared_data):
    labels = pd.read_csv(shared_data / "fma_metadata" / "labels.csv")
    ds = open_dataset(f"fma:{shared_data / 'fma_small'}", metadata=shared_data / "fma_metadata" / "labels.csv")
    assert len(ds.tracks) == len(labels) == 48
    by_id = {str(r.track_id): r for r in labels.itertuples()}
    for t in ds.tracks:
        row = by_id[t.track_id]
        assert t.label == row.genre_top and t.split == normalise_split(row.split) == "train"
        assert Path(t.path) == fma_audio_path(shared_data / "fma_small", int(t.track_id))
        assert Path(t.path).is_file()
    assert Counter(t.label for t in ds.tracks) == Counter(labels["genre_top"])
    n = len(ds.tracks)
    assert ds.notes == [f"artist read from the ID3 tag for {n} of {n} tracks without artist_id"]


def test_fma_audio_path_rule():
    assert fma_audio_path("fma_small", 2) == Path("fma_small/000/000002.mp3")
    assert fma_audio_path("fma_large", 155066) == Path("fma_large/155/155066.mp3")
    assert fma_audio_path(Path("/x"), "1234") == Path("/x/001/001234.mp3")


def test_tracks_csv_fixture_has_the_real_layout():
    """The fixture reproduces FMA's tracks.csv: three header lines, 52 columns in four groups."""
    lines = TRACKS_CSV.read_text().splitlines()
    top, sub, index_line = (line.split(",") for line in lines[:3])
    assert top[0] == sub[0] == "" and index_line[0] == "track_id" and set(index_line[1:]) == {""}
    assert len(top) == len(sub) == len(index_line) == 53
    assert list(dict.fromkeys(top[1:])) == ["album", "artist", "set", "track"]
    assert Counter(top[1:]) == {"album": 13, "artist": 17, "set": 2, "track": 20}
    columns = list(zip(top, sub))
    for used, position in [(("artist", "id"), 21), (("set", "split"), 31), (("set", "subset"), 32),
                           (("track", "genre_top"), 40)]:
        assert columns.index(used) == position
    raw = pd.read_csv(TRACKS_CSV, header=[0, 1], index_col=0)
    assert raw.shape[1] == 52 and raw.index.name == "track_id"
    assert raw[("track", "genre_top")].isna().any()
    assert set(raw[("set", "subset")]) == {"small", "medium", "large"}
    assert set(raw[("set", "split")]) == {"training", "validation", "test"}


def test_load_fma_metadata_from_tracks_csv():
    raw = pd.read_csv(TRACKS_CSV, header=[0, 1], index_col=0)
    meta = load_fma_metadata(TRACKS_CSV, subset="small")
    assert list(meta.columns) == ["genre_top", "split", "subset", "artist_id"]
    assert meta.index.name == "track_id" and meta.index.dtype.kind == "i"
    small = raw[(raw[("set", "subset")] == "small") & raw[("track", "genre_top")].notna()]
    assert list(meta.index) == list(small.index)
    assert list(meta["genre_top"]) == list(small[("track", "genre_top")])
    assert list(meta["artist_id"]) == list(small[("artist", "id")])
    assert list(meta["split"]) == list(small[("set", "split")])


def test_fma_subsets_are_nested():
    raw = pd.read_csv(TRACKS_CSV, header=[0, 1], index_col=0)
    labelled = raw[raw[("track", "genre_top")].notna()]
    ids = {s: set(load_fma_metadata(TRACKS_CSV, subset=s).index) for s in ("small", "medium", "large")}
    assert ids["small"] < ids["medium"] < ids["large"]
    for subset, allowed in [("small", {"small"}), ("medium", {"small", "medium"}),
                            ("large", {"small", "medium", "large"})]:
        assert ids[subset] == set(labelled[labelled[("set", "subset")].isin(allowed)].index)
    assert not ids["large"] & set(raw[raw[("track", "genre_top")].isna()].index)  # unlabelled: dropped


def test_read_fma_tracks_csv_on_real_audio(shared_data):
    """Real MP3s with the tracks.csv fixture: tracks without a file are counted in the notes."""
    meta = load_fma_metadata(TRACKS_CSV, "small")
    ds = read_fma(shared_data / "fma_small", TRACKS_CSV, "small")
    present = [i for i in meta.index if fma_audio_path(shared_data / "fma_small", i).exists()]
    assert [int(t.track_id) for t in ds.tracks] == present
    assert 0 < len(present) < len(meta)
    assert ds.notes == [f"{len(meta) - len(present)} tracks in the metadata have no audio file under "
                        f"{shared_data / 'fma_small'}"]
    by_id = {t.track_id: t for t in ds.tracks}
    assert by_id["2"].artist == by_id["5"].artist == str(meta.loc[2, "artist_id"])
    assert by_id["2"].label == "Hip-Hop" and by_id["2"].split == "train"
    assert by_id["2"].path == str(shared_data / "fma_small" / "000" / "000002.mp3")


def test_read_fma_splits_and_missing_files(tmp_path):
    audio = tmp_path / "fma_medium"
    meta = load_fma_metadata(TRACKS_CSV, "medium")
    kept = list(meta.index)[::2]
    for track_id in kept:
        touch(fma_audio_path(audio, track_id))
    ds = open_dataset(f"fma:{audio}", metadata=TRACKS_CSV, subset="medium")
    assert [int(t.track_id) for t in ds.tracks] == kept
    assert ds.notes[0].startswith(f"{len(meta) - len(kept)} tracks")
    assert {t.split for t in ds.tracks} <= {"train", "valid", "test"}
    for t in ds.tracks:
        assert t.split == normalise_split(meta.loc[int(t.track_id), "split"])
        assert t.group == f"artist:{int(meta.loc[int(t.track_id), 'artist_id'])}"


def test_fma_plain_csv_with_artist_and_subset(tmp_path):
    audio = tmp_path / "fma"
    for i in (2, 3, 5):
        touch(fma_audio_path(audio, i))
    labels = tmp_path / "labels.csv"
    labels.write_text("track_id,genre_top,split,subset,artist_id\n2,Hip-Hop,training,small,1\n"
                      "3,Hip-Hop,validation,medium,1\n5,,test,small,2\n7,Rock,test,small,\n")
    ds = read_fma(audio, labels, "medium")
    assert [(t.track_id, t.split, t.artist) for t in ds.tracks] == [("2", "train", "1"), ("3", "valid", "1")]
    assert ds.notes == [f"1 tracks in the metadata have no audio file under {audio}"]  # track 7
    assert [t.track_id for t in read_fma(audio, labels, "small").tracks] == ["2"]


def test_fma_bad_inputs(tmp_path):
    audio = tmp_path / "fma"
    touch(fma_audio_path(audio, 2))
    with pytest.raises(DatasetError, match="needs --metadata"):
        open_dataset(f"fma:{audio}")
    with pytest.raises(DatasetError, match="metadata not found"):
        read_fma(audio, tmp_path / "tracks.csv")
    with pytest.raises(DatasetError, match="audio folder not found"):
        read_fma(tmp_path / "nope", TRACKS_CSV)
    with pytest.raises(DatasetError, match="subset must be one of"):
        load_fma_metadata(TRACKS_CSV, subset="tiny")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,genre\n2,Hip-Hop\n")
    with pytest.raises(DatasetError, match="track_id and genre_top"):
        load_fma_metadata(wrong)
    # a two-row header without the set columns is not a tracks.csv
    lines = TRACKS_CSV.read_text().splitlines()
    cut = [",".join(line.split(",")[:31]) for line in lines[:3]] + ["2" + ",x" * 30]
    headless = tmp_path / "tracks_cut.csv"
    headless.write_text("\n".join(cut) + "\n")
    with pytest.raises(DatasetError, match="missing columns"):
        load_fma_metadata(headless)
    with pytest.raises(DatasetError, match="no tracks found"):
        read_fma(_empty(tmp_path), TRACKS_CSV)


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty_audio"
    folder.mkdir()
    return folder


# --- folder tree and manifest ----------------------------------------------------------

def test_folder_tree(tmp_path):
    touch(tmp_path / "jazz" / "a.mp3")
    touch(tmp_path / "jazz" / "live" / "b.flac")
    touch(tmp_path / "rock" / "c.WAV")
    touch(tmp_path / "rock" / "notes.txt")
    touch(tmp_path / ".hidden" / "d.wav")
    touch(tmp_path / "loose.wav")  # not in a label folder
    ds = read_folder(tmp_path)
    assert [(t.track_id, t.label) for t in ds.tracks] == [("jazz/a.mp3", "jazz"), ("jazz/live/b.flac", "jazz"),
                                                          ("rock/c.WAV", "rock")]
    assert ds.tracks[1].path == str(tmp_path / "jazz" / "live" / "b.flac")
    split = open_dataset(f"folder:{tmp_path}")
    assert all(t.split in ("train", "valid", "test") for t in split.tracks)


def test_folder_tree_keeps_a_broken_link_to_report_it(tmp_path):
    touch(tmp_path / "jazz" / "a.mp3")
    (tmp_path / "jazz" / "gone.flac").symlink_to(tmp_path / "nowhere.flac")
    ds = read_folder(tmp_path)
    assert [t.track_id for t in ds.tracks] == ["jazz/a.mp3", "jazz/gone.flac"]


def test_folder_bad_inputs(tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        read_folder(tmp_path / "nope")
    touch(tmp_path / "jazz" / "readme.txt")
    with pytest.raises(DatasetError, match="no tracks found"):
        read_folder(tmp_path)


def test_manifest_relative_paths_and_groups(tmp_path):
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "library.csv"
    absolute = touch(tmp_path / "elsewhere" / "z.wav")
    manifest.write_text("path,label,split,group\n"
                        "../audio/a.mp3,jazz,training,artist1\n"
                        "../audio/b.mp3,jazz,,artist1\n"
                        f"{absolute},rock,validation,\n"
                        "c.ogg,rock,,\n")
    ds = read_manifest(manifest)
    assert [t.path for t in ds.tracks] == [str(manifest.parent / "../audio/a.mp3"),
                                           str(manifest.parent / "../audio/b.mp3"), str(absolute),
                                           str(manifest.parent / "c.ogg")]
    assert [t.split for t in ds.tracks] == ["train", None, "valid", None]
    assert [t.artist for t in ds.tracks] == ["artist1", "artist1", None, None]
    assert ds.tracks[0].track_id == "../audio/a.mp3"
    opened = open_dataset(f"manifest:{manifest}")
    assert opened.tracks[0].split == "train" and opened.tracks[2].split == "valid"  # kept
    assert all(t.split for t in opened.tracks)


def test_manifest_bad_inputs(tmp_path):
    def write(text):
        path = tmp_path / "m.csv"
        path.write_text(text)
        return path

    with pytest.raises(DatasetError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    with pytest.raises(DatasetError, match="needs columns path,label"):
        read_manifest(write("file,genre\na.wav,jazz\n"))
    with pytest.raises(DatasetError, match=r"m\.csv:3: empty path or label"):
        read_manifest(write("path,label\na.wav,jazz\nb.wav,\n"))
    with pytest.raises(DatasetError, match=r"m\.csv:3: a\.wav is the same file as a\.wav on line 2"):
        read_manifest(write("path,label\na.wav,jazz\na.wav,rock\n"))
    with pytest.raises(DatasetError, match=r"m\.csv:3: x listed twice \(first on line 2\)"):
        read_manifest(write("path,label,track_id\na.wav,jazz,x\nb.wav,jazz,x\n"))
    with pytest.raises(DatasetError, match="no tracks found"):
        read_manifest(write("path,label\n"))


def write_manifest(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_manifest_same_file_under_two_spellings(tmp_path):
    touch(tmp_path / "audio" / "a.wav")
    os.symlink(tmp_path / "audio" / "a.wav", tmp_path / "link.wav")
    for other in ("./audio/../audio/a.wav", str(tmp_path / "audio" / "a.wav"), "link.wav"):
        path = write_manifest(tmp_path, f"path,label\naudio/a.wav,rock\nb.wav,rock\n{other},jazz\n")
        with pytest.raises(DatasetError) as e:
            read_manifest(path)
        assert str(e.value) == (f"{path}:4: {other} is the same file as audio/a.wav on line 2 with another label "
                                "('rock' there, 'jazz' here); list each file once")


def test_manifest_split_typo_is_refused(tmp_path):
    path = write_manifest(tmp_path, "path,label,split\na.wav,rock,train\nb.wav,rock,tset\n")
    with pytest.raises(DatasetError) as e:
        read_manifest(path)
    assert str(e.value).startswith(f"{path}:3: unknown split 'tset'; use train, valid, test or excluded")
    ok = write_manifest(tmp_path, "path,label,split\na.wav,rock,Training\nb.wav,rock,excluded\nc.wav,rock,\n")
    assert [t.split for t in read_manifest(ok).tracks] == ["train", "excluded", None]


def test_manifest_labels_differing_only_in_case_are_refused(tmp_path):
    path = write_manifest(tmp_path, "path,label\na.wav,Rock\nb.wav,jazz\nc.wav,rock\n")
    with pytest.raises(DatasetError) as e:
        read_manifest(path)
    assert str(e.value) == f"{path}:4: label 'rock' differs from 'Rock' (line 2) only in case; write one spelling"


def test_manifest_with_excel_bom_and_spaces(tmp_path):
    path = write_manifest(tmp_path, "\ufeffpath, label ,split\r\na.wav, rock ,train\r\nb.wav,jazz,\r\n")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    ds = read_manifest(path)
    assert [(t.track_id, t.label, t.split) for t in ds.tracks] == [("a.wav", "rock", "train"), ("b.wav", "jazz", None)]


def test_manifest_not_utf8(tmp_path):
    data = b"path,label\na.wav,rock\nb.wav,rock\n" + "caf\u00e9.wav,jazz\n".encode("latin-1")
    path = write_manifest(tmp_path, data)
    with pytest.raises(DatasetError) as e:
        read_manifest(path)
    offset = data.index(b"\xe9")
    assert str(e.value) == (f"{path}:4: not UTF-8 text (byte 0xe9 at offset {offset}); save the file as UTF-8")


def test_manifest_track_ids_derive_from_the_path(tmp_path):
    """Without track_id a track's id is its normalised path as written: the same ids
    wherever the manifest and its audio are moved."""
    text = "path,label\n./audio/../a.wav,rock\naudio/b.wav,jazz\n../c.wav,jazz\n"
    ids = []
    for folder in ("one", "two/deeper"):
        (tmp_path / folder).mkdir(parents=True)
        ids.append([t.track_id for t in read_manifest(write_manifest(tmp_path / folder, text)).tracks])
    assert ids[0] == ids[1] == ["a.wav", "audio/b.wav", "../c.wav"]
    given = write_manifest(tmp_path, "path,label,track_id\na.wav,rock,song-1\nb.wav,rock,\n")
    assert [t.track_id for t in read_manifest(given).tracks] == ["song-1", "b.wav"]


def test_manifest_artist_credits_are_grouped_and_groups_kept(tmp_path):
    path = write_manifest(tmp_path, "path,label,artist,group\n"
                                    "a.wav,rock,Morphine,\n"
                                    "b.wav,rock,George S. Clinton & Morphine,\n"
                                    "c.wav,rock,George S. Clinton,\n"
                                    "d.wav,jazz,Someone & Else,band x\n"
                                    "e.wav,jazz,,\n")
    ds = read_manifest(path)
    # both names are in two credits: the key is the first name in sorted order ("clinton george s")
    assert [t.artist for t in ds.tracks] == ["George S. Clinton"] * 3 + ["band x", None]
    assert len({t.group for t in ds.tracks[:3]}) == 1


@pytest.mark.parametrize("spec", ["gtzan", "gtzan:", "mp3:/x", "/some/folder", ":x"])
def test_bad_specs(spec):
    with pytest.raises(DatasetError) as e:
        open_dataset(spec)
    assert "KIND:PATH" in str(e.value) and repr(spec) in str(e.value)


# --- artists ---------------------------------------------------------------------------

def test_credit_names_and_name_keys():
    assert credit_names("George S. Clinton & Morphine") == ["George S. Clinton", "Morphine"]
    assert credit_names("A, B feat. C Featuring D ft. E") == ["A", "B", "C", "D", "E"]
    assert credit_names("KC and the Sunshine Band") == ["KC and the Sunshine Band"]
    assert name_key("Maurice André") == name_key("maurice andre")
    assert name_key("Alec K. Redfearn and the Eyesores") == name_key("Alec K Redfearn And The Eyesores")
    assert name_key("Ed Askew") == name_key("Askew Ed") != name_key("Ed Askey")
    assert name_key("The The") == "the"


def test_group_credits_is_a_union_of_names_and_order_free():
    credits = ["A & B", "B feat. C", "C", "D", "The D", "E, F"]
    groups = group_credits(credits)
    assert groups["A & B"] == groups["B feat. C"] == groups["C"]
    assert groups["D"] == groups["The D"] != groups["C"]
    assert groups["E, F"] not in (groups["C"], groups["D"])
    assert group_credits(list(reversed(credits))) == groups
    assert groups["C"] in ("A", "B", "C") and groups["A & B"] == "B"  # B is in most credits


def gtzan_tree(root: Path, ids) -> Path:
    for track_id in ids:
        touch(root / track_id.split(".")[0] / f"{track_id}.wav")
    return root


def test_gtzan_with_artist_list(tmp_path):
    root = gtzan_tree(tmp_path / "g", [f"rock.0000{i}" for i in range(6)] + ["jazz.00001", "jazz.00002"])
    artists = tmp_path / "artists.csv"
    artists.write_text("track_id,artist,title\n"
                       "rock.00000,Morphine,x\nrock.00001,George S. Clinton & Morphine,y\n"
                       "rock.00002,The Prodigy,z\nrock.00003,Prodigy feat. Someone,\nrock.00004,,\n"
                       "jazz.00001,Joe Lovano,\nblues.00099,Nobody Here,\n", encoding="utf-8")
    ds = open_dataset(f"gtzan:{root}", artists=artists, seed=1)
    by_id = {t.track_id: t for t in ds.tracks}
    assert by_id["rock.00000"].group == by_id["rock.00001"].group == "artist:Morphine"
    assert by_id["rock.00002"].artist == by_id["rock.00003"].artist != by_id["rock.00000"].artist
    assert by_id["rock.00004"].artist is None and by_id["rock.00005"].artist is None  # empty / not listed
    assert by_id["jazz.00001"].artist == "Joe Lovano"
    assert by_id["rock.00000"].split == by_id["rock.00001"].split
    assert f"1 rows of the artist list {artists} match no track" in ds.notes
    direct = read_gtzan(root, artists=artists)
    assert [t.artist for t in direct.tracks] == [t.artist for t in ds.tracks]


def test_artist_list_for_any_kind_and_bad_lists(tmp_path):
    touch(tmp_path / "music" / "jazz" / "a.mp3")
    touch(tmp_path / "music" / "jazz" / "b.mp3")
    artists = tmp_path / "artists.csv"
    artists.write_text("track_id,artist\njazz/a.mp3,Miles Davis\njazz/b.mp3,Miles Davis & John Coltrane\n")
    ds = open_dataset(f"folder:{tmp_path / 'music'}", artists=artists)
    assert [t.artist for t in ds.tracks] == ["Miles Davis", "Miles Davis"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\njazz/a.mp3,x\n")
    with pytest.raises(DatasetError, match="an artist list needs columns track_id,artist"):
        open_dataset(f"folder:{tmp_path / 'music'}", artists=bad)
    with pytest.raises(DatasetError, match="artist list not found"):
        open_dataset(f"folder:{tmp_path / 'music'}", artists=tmp_path / "none.csv")


def test_cli_artists_argument(tmp_path):
    import argparse

    from genrekit.cli._common import add_dataset_arguments, dataset_from_args

    root = gtzan_tree(tmp_path / "g", ["rock.00000", "rock.00001"])
    artists = tmp_path / "a.csv"
    artists.write_text("track_id,artist\nrock.00000,Morphine\nrock.00001,George S. Clinton & Morphine\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    add_dataset_arguments(parser)
    ds = dataset_from_args(parser.parse_args([f"gtzan:{root}", "--artists", str(artists)]))
    assert {t.artist for t in ds.tracks} == {"Morphine"}
    assert {t.artist for t in dataset_from_args(parser.parse_args([f"gtzan:{root}"])).tracks} == {None}


def test_gtzan_dev_artist_list_groups_shared_names(shared_data):
    """On the real list: any two tracks whose credits share a name are in one group."""
    listed = REPO / "bench" / "data" / "gtzan_dev_artists.csv"
    with open(listed, newline="", encoding="utf-8") as f:
        credits = {r["track_id"]: r["artist"] for r in csv.DictReader(f)}
    ds = open_dataset(f"gtzan:{shared_data}", splits=shared_data / "gtzan_labels.csv", artists=listed)
    artist = {t.track_id: t.artist for t in ds.tracks}
    names = {tid: {name_key(n) for n in credit_names(c)} for tid, c in credits.items() if c}
    assert set(names) <= set(artist)
    pairs = [(a, b) for a in names for b in names if a < b and names[a] & names[b]]
    assert pairs and all(artist[a] == artist[b] for a, b in pairs)
    assert artist["rock.00000"] == artist[next(t for t, c in credits.items() if "George S. Clinton" in c)]
    assert all(artist[t] is None for t, c in credits.items() if not c)
    assert len(set(artist.values())) < len({c for c in credits.values() if c})  # some credits merged


def write_id3(path: Path, artist: str | None) -> Path:
    from mutagen.id3 import ID3, TPE1

    touch(path, b"\xff\xfb\x90\x00" + bytes(400))
    if artist is not None:
        tags = ID3()
        tags.add(TPE1(encoding=3, text=artist))
        tags.save(str(path))
    return path


def test_fma_artist_from_id3_when_metadata_has_none(tmp_path):
    audio = tmp_path / "fma"
    for track_id, artist in [(2, "AWOL"), (5, "AWOL"), (10, "Ed Askew"), (20, "Askew Ed"), (30, None),
                             (40, "Kurt Vile feat. AWOL")]:
        write_id3(fma_audio_path(audio, track_id), artist)
    write_id3(fma_audio_path(audio, 50), "Ignored")
    labels = tmp_path / "labels.csv"
    labels.write_text("track_id,genre_top,split,artist_id\n2,Rock,training,\n5,Rock,training,\n10,Folk,training,\n"
                      "20,Folk,training,\n30,Folk,training,\n40,Rock,training,\n50,Rock,training,7\n")
    ds = read_fma(audio, labels)
    artist = {t.track_id: t.artist for t in ds.tracks}
    assert artist["2"] == artist["5"] == artist["40"] == "AWOL"
    assert artist["10"] == artist["20"] != artist["2"]
    assert artist["30"] is None and artist["50"] == "7"  # no tag; artist_id wins over the tag
    assert "artist read from the ID3 tag for 5 of 6 tracks without artist_id" in ds.notes
    assert id3_artist(fma_audio_path(audio, 30)) is None and id3_artist(tmp_path / "missing.mp3") is None


def test_check_split():
    assert [check_split(v, "x") for v in ("train", "Validation", "val", " test ", "testing", "excluded", "")] == \
        ["train", "valid", "valid", "test", "test", "excluded", None]
    for typo in ("tset", "trian", "dev"):
        with pytest.raises(DatasetError, match=f"x: unknown split '{typo}'"):
            check_split(typo, "x")


# --- splits ----------------------------------------------------------------------------

def make_tracks(n_artists=40, per_artist=3, labels=("jazz", "rock", "pop")):
    tracks = []
    for a in range(n_artists):
        for k in range(per_artist):
            tracks.append(Track(f"a{a}-{k}", f"/music/a{a}/{k}.mp3", labels[a % len(labels)], artist=f"artist{a}"))
    return tracks


def test_assign_splits_keeps_groups_together():
    tracks = make_tracks() + [Track(f"solo{i}", f"/solo/{i}.mp3", "jazz") for i in range(12)]
    out = assign_splits(tracks, valid_fraction=0.2, test_fraction=0.2, seed=1)
    assert [t.track_id for t in out] == [t.track_id for t in tracks]  # each track once, in order
    splits_of = defaultdict(set)
    for t in out:
        assert t.split in ("train", "valid", "test")
        splits_of[t.group].add(t.split)
    assert all(len(s) == 1 for s in splits_of.values())
    for label in ("jazz", "rock", "pop"):  # every split gets every label
        assert {t.split for t in out if t.label == label} == {"train", "valid", "test"}
    groups = Counter(next(iter(s)) for s in splits_of.values())
    assert groups["train"] > groups["valid"] > 0 and groups["test"] > 0
    assert abs(groups["test"] - 0.2 * len(splits_of)) <= 3


def test_assign_splits_is_deterministic_and_seeded():
    tracks = make_tracks()
    first = [t.split for t in assign_splits(tracks, seed=5)]
    assert first == [t.split for t in assign_splits(list(reversed(tracks)), seed=5)][::-1]
    assert first == [t.split for t in assign_splits(tracks, seed=5)]
    assert any([t.split for t in assign_splits(tracks, seed=s)] != first for s in range(6, 10))


def test_assign_splits_keeps_given_splits():
    tracks = make_tracks(9)
    given = [t if i % 4 else Track(**{**t.to_dict(), "split": "test"}) for i, t in enumerate(tracks)]
    out = assign_splits(given)
    for before, after in zip(given, out):
        if before.split:
            assert after.split == "test"
    assert all(t.split for t in out)
    splits_of = defaultdict(set)
    for t in out:  # the artist's other tracks joined the split it already had
        splits_of[t.group].add(t.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {t.split for t in out if t.group == given[0].group} == {"test"}
    redone = assign_splits(given, only_missing=False)
    assert any(t.split != "test" for t, g in zip(redone, given) if g.split)


def test_assign_splits_small_label_goes_to_train():
    tracks = [Track("x1", "x1.wav", "rare", artist="r1"), Track("x2", "x2.wav", "rare", artist="r2")]
    assert {t.split for t in assign_splits(tracks)} == {"train"}


def test_check_disjoint(tmp_path):
    a = [Track("1", str(tmp_path / "1.wav"), "jazz", artist="x"), Track("2", str(tmp_path / "2.wav"), "rock")]
    check_disjoint(a, [Track("3", str(tmp_path / "3.wav"), "jazz", artist="y")])
    with pytest.raises(LeakageError, match=r"share 1 track\(s\)"):
        check_disjoint(a, [Track("2", str(tmp_path / "other.wav"), "rock")])
    with pytest.raises(LeakageError, match=r"share 1 artist\(s\), e.g. \['x'\]"):
        check_disjoint(a, [Track("9", str(tmp_path / "9.wav"), "jazz", artist="x")], what="train and test")
    link = tmp_path / "link.wav"
    touch(tmp_path / "2.wav")
    os.symlink(tmp_path / "2.wav", link)
    with pytest.raises(LeakageError, match=r"file\(s\)"):
        check_disjoint(a, [Track("7", str(link), "rock")])
    split = assign_splits(make_tracks(), seed=2)
    check_disjoint(Dataset("d", "", split).subset("train"), Dataset("d", "", split).subset("test"))


def test_normalise_split():
    assert [normalise_split(v) for v in ("training", "Validation", " test ", "val", "", None, float("nan"))] == \
        ["train", "valid", "test", "valid", None, None, None]


def test_kfold_assign_keeps_artists_together_and_balances_folds():
    from collections import Counter

    from genrekit.datasets.base import kfold_assign

    tracks = [Track(f"t{i}", f"{i}.wav", ["rock", "jazz", "pop"][i % 3], artist=f"a{i // 2}") for i in range(30)]
    folds = kfold_assign(tracks, 5, seed=1)
    assert set(folds) == {t.track_id for t in tracks} and set(folds.values()) == set(range(5))
    by_artist = {}
    for t in tracks:
        by_artist.setdefault(t.artist, set()).add(folds[t.track_id])
    assert all(len(f) == 1 for f in by_artist.values())  # an artist never spans two folds
    sizes = Counter(folds.values()).values()
    assert max(sizes) - min(sizes) <= 2
    assert kfold_assign(tracks, 5, seed=1) == folds and kfold_assign(tracks, 5, seed=2) != folds
    with pytest.raises(DatasetError):
        kfold_assign(tracks[:3], 5)


def test_fma_without_pandas_says_which_extra_in_one_line(tmp_path, monkeypatch, capsys):
    """The light install has no pandas: `prepare fma:` said so with a traceback."""
    import sys

    from genrekit.cli import main

    metadata = tmp_path / "labels.csv"
    metadata.write_text("track_id,genre_top,split\n2,Hip-Hop,training\n", encoding="utf-8")
    (tmp_path / "fma_small" / "000").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    code = main(["prepare", f"fma:{tmp_path / 'fma_small'}", "--metadata", str(metadata),
                 "--out", str(tmp_path / "cache"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "FMA's metadata" in err and "pip install 'genrekit[train]'" in err
    assert len(err.strip().splitlines()) == 1, err
