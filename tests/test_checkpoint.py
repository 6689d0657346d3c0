"""Checkpoints: safetensors round trips, legacy files, and a hostile pickle that must never run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from genrekit.checkpoint import (  # noqa: E402
    CHECKPOINT_FORMAT,
    load_checkpoint,
    model_from_checkpoint,
    read_metadata,
    save_checkpoint,
)
from genrekit.cli import main  # noqa: E402
from genrekit.errors import CheckpointError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Pickles to a call of os.system: loading it with a full unpickler runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hostile_pt(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.pt"
    torch.save({"format": 1, "labels": ["a"], "state_dict": {}, "evil": Payload(marker)}, path)
    return path, marker


def _small_payload():
    from genrekit.config import FeatureConfig
    from genrekit.models import ModelConfig, build_model

    torch.manual_seed(0)  # fixed weights: random ones hold pickle's 3 magic bytes in about 1 run of 40
    model = build_model(ModelConfig("small_cnn", 2)).eval()
    return {"format": CHECKPOINT_FORMAT, "labels": ["jazz", "rock"], "feature_config": FeatureConfig().to_dict(),
            "model_config": model.config.to_dict(), "state_dict": model.state_dict(), "history": [{"epoch": 1}]}


def test_round_trip_keeps_nested_tensors_tuples_and_int_keys(tmp_path):
    payload = _small_payload()
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    payload["resume"] = {"optimizer": optimizer.state_dict(), "generator": torch.Generator().manual_seed(3).get_state()}
    path = save_checkpoint(payload, tmp_path / "c.safetensors")
    loaded = load_checkpoint(path)
    state = loaded["resume"]["optimizer"]
    assert set(state["state"]) == {0, 1} and isinstance(state["param_groups"][0]["betas"], tuple)
    assert torch.equal(state["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fresh.load_state_dict(state)  # the optimiser accepts what came back
    for key, value in payload["state_dict"].items():
        assert torch.equal(loaded["state_dict"][key], value)
    assert read_metadata(path)["labels"] == ["jazz", "rock"]  # the JSON part, without torch
    assert model_from_checkpoint(loaded).config.n_classes == 2


def test_a_checkpoint_gets_the_permissions_of_the_other_run_files(tmp_path):
    from genrekit.io import write_json

    path = save_checkpoint(_small_payload(), tmp_path / "c.safetensors")
    write_json(tmp_path / "c.json", {})
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == os.stat(tmp_path / "c.json").st_mode & 0o777 == 0o666 & ~mask


def test_the_file_holds_no_pickle(tmp_path):
    path = save_checkpoint(_small_payload(), tmp_path / "c.safetensors")
    assert b"\x80\x04\x95" not in path.read_bytes() and b"PK\x03\x04" not in path.read_bytes()[:4]


def test_legacy_pt_loads_with_plain_data_only(tmp_path):
    payload = _small_payload() | {"format": 1}
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["labels"] == ["jazz", "rock"]


def test_hostile_pickle_is_refused_and_never_runs(hostile_pt):
    path, marker = hostile_pt
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "tag"])
def test_hostile_pickle_is_refused_by_every_command(hostile_pt, tmp_path, command, capsys):
    path, marker = hostile_pt
    audio = tmp_path / "song.wav"
    audio.write_bytes(b"RIFF")
    args = {"predict": ["predict", str(audio), "--model", str(path)],
            "evaluate": ["evaluate", str(path), f"folder:{tmp_path}"],
            "export": ["export", str(path), "--out", str(tmp_path / "m.onnx")],
            "tag": ["tag", str(audio), "--model", str(path)]}[command]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "Traceback" not in err
    assert not marker.exists()


def test_serve_refuses_a_hostile_model(hostile_pt):
    path, marker = hostile_pt
    proc = subprocess.run([sys.executable, "-m", "genrekit", "serve", "--model", str(path), "--port", "0"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 1 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize("content, reason", [
    (b"garbage bytes that are no model", "not a"),
    (b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", "not a genrekit checkpoint"),
])
def test_garbage_model_files_get_one_line(tmp_path, content, reason, capsys):
    for suffix in (".pt", ".safetensors", ".onnx"):
        path = tmp_path / f"bad{suffix}"
        path.write_bytes(content)
        audio = tmp_path / "x.wav"
        assert main(["predict", str(audio), "--model", str(path)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and str(path) in err, err


@pytest.mark.parametrize("name", ["notes.txt", "notes.pt", "notes"])
def test_a_text_file_as_model_gets_a_plain_reason(tmp_path, name, capsys):
    path = tmp_path / name
    path.write_text("some notes\nthat are no model\n")
    assert main(["predict", str(tmp_path / "x.wav"), "--model", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: not a genrekit model file (.onnx, or a .safetensors checkpoint)" in err, err
    assert "KeyError" not in err and len(err.strip().splitlines()) == 1


def test_legacy_pt_in_the_old_pickle_format_still_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": 1, "labels": ["a"]}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="no 'feature_config'"):  # read, then found incomplete
        load_checkpoint(path)


def test_checkpoint_without_state_dict_or_with_wrong_head(tmp_path):
    payload = _small_payload()
    broken = dict(payload)
    del broken["state_dict"]
    torch.save(broken | {"format": 1}, tmp_path / "nostate.pt")
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        load_checkpoint(tmp_path / "nostate.pt")
    wrong = payload | {"labels": ["a", "b", "c"]}
    with pytest.raises(CheckpointError, match="3 labels but its head has 2"):
        model_from_checkpoint(wrong)


def test_export_help_names_the_checkpoint_format_train_writes(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "training checkpoint (.safetensors" in out and "(.pt)" not in out
