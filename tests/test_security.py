"""What a user receives is data: a model folder, a cache, a recipe ledger and a transcripts file,
each crafted to run code, write outside its place or delete, is refused — and a marker file
that the crafted code would write proves that nothing ran."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner
from conftest import run_extract_cli

from emi_heads.cli.train import train_command
from emi_heads.cli.use import export_command, predict_command

EVIL_CODE = """
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
from transformers import PretrainedConfig
class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def one_line_error(result, *words: str) -> None:
    """Exit 1, one `Error:` line holding `words`, no traceback."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]


def evil_model(folder: Path, marker: Path) -> Path:
    """A model folder whose config maps to its own Python code, which writes `marker`."""
    folder.mkdir(parents=True)
    (folder / "evil.py").write_text(EVIL_CODE.format(marker=str(marker)))
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil",
                "auto_map": {
                    "AutoConfig": "evil.EvilConfig",
                    "AutoModel": "evil.EvilConfig",
                    "AutoImageProcessor": "evil.EvilConfig",
                },
            }
        )
    )
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"auto_map": {"AutoImageProcessor": "evil.EvilConfig"}})
    )
    return folder


@pytest.fixture(scope="module")
def base(sample_root, tmp_path_factory):
    """The sample in fbank with a pooled fbank-10ms stream, a ridge run reading both, and that
    run exported as a model folder."""
    work = tmp_path_factory.mktemp("security")
    cache = work / "cache.h5"
    run_extract_cli(sample_root, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0)
    run_extract_cli(
        sample_root,
        "--model",
        "fbank-10ms",
        "--stream",
        "fb10",
        "--pool",
        "mean",
        "--out",
        cache,
        "--quiet",
        "--workers",
        0,
    )
    labels = [
        "--train",
        sample_root / "train_split.csv",
        "--valid",
        sample_root / "valid_split.csv",
    ]
    result = invoke(
        train_command,
        cache,
        *labels,
        "--head",
        "ridge",
        "--inputs",
        "frame_stats,features/fb10",
        "--out",
        work / "ridge",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert invoke(export_command, work / "ridge", "--out", work / "model").exit_code == 0
    return {
        "cache": cache,
        "run": work / "ridge",
        "model": work / "model",
        "labels": labels,
        "clip": next((sample_root / "raw").glob("*.mp4")),
    }


def crafted(base: dict, tmp_path: Path, edit) -> Path:
    """A copy of the exported model with `edit(config)` applied to its run's config.json."""
    folder = tmp_path / "received"
    shutil.copytree(base["model"], folder)
    path = folder / "run-0" / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    return folder


def as_vision(config: dict, settings: dict, model: str) -> None:
    """The run's fb10 stream recorded as a vision stream of `model` with `settings`."""
    config["cache"]["recipe"]["streams"]["fb10"] = {
        "source": "emi-extract --modality vision --model x",
        "modality": "vision",
        "settings": json.dumps(settings),
        "backbone": model,
        "fingerprint": "f",
    }


@pytest.mark.slow
def test_a_recorded_setting_cannot_turn_on_remote_code(base, tmp_path):
    marker = tmp_path / "ran"
    settings = {"fps": 5.0, "crop": "none", "trust_remote_code": "--quiet"}
    folder = crafted(base, tmp_path, lambda c: as_vision(c, settings, "models/evil"))
    evil_model(folder / "models" / "evil", marker)
    result = invoke(
        predict_command, "--model", folder, "--media", base["clip"], "--out", tmp_path / "x.csv"
    )
    one_line_error(result, "trust_remote_code is not a setting of --modality vision")
    from emi_heads import load_model
    from emi_heads.training.rundir import RunError

    with pytest.raises(RunError, match="trust_remote_code is not a setting"):
        load_model(folder)
    assert not marker.exists() and not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_a_folder_inside_the_model_runs_no_code_without_the_users_flag(base, tmp_path):
    """A valid recipe naming a model inside the folder that carries its own code: stage one
    runs, and transformers refuses the code because no --trust-remote-code was given."""
    marker = tmp_path / "ran"
    settings = {"fps": 5.0, "crop": "none"}
    folder = crafted(base, tmp_path, lambda c: as_vision(c, settings, "models/evil"))
    evil_model(folder / "models" / "evil", marker)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emi_heads",
            "predict",
            "--model",
            str(folder),
            "--media",
            str(base["clip"]),
            "--out",
            str(tmp_path / "x.csv"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "stage one loads stream fb10: models/evil" in done.stderr
    assert "--trust-remote-code" in done.stderr and "emi extract failed" in done.stderr
    assert not marker.exists() and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("model", ["/ABSOLUTE/evil", "../evil", "models/../../evil"])
def test_a_model_outside_the_folder_is_refused(base, tmp_path, model):
    marker = tmp_path / "ran"
    evil = evil_model(tmp_path / "evil", marker)
    named = model.replace("/ABSOLUTE/evil", str(evil))
    folder = crafted(base, tmp_path, lambda c: as_vision(c, {"fps": 5.0}, named))
    result = invoke(
        predict_command, "--model", folder, "--media", base["clip"], "--out", tmp_path / "x.csv"
    )
    one_line_error(result, "backbone")
    assert not marker.exists()


@pytest.mark.slow
def test_a_recorded_fingerprint_never_names_a_file(base, tmp_path):
    victim = tmp_path / "victim.h5"
    shutil.copy(base["cache"], victim)
    before = hashlib.sha256(victim.read_bytes()).hexdigest()

    def aim(config: dict) -> None:
        config["cache"]["backbone_fingerprint"] = str(tmp_path / "victim")
        config["cache"]["recipe"]["extraction"]["backbone_fingerprint"] = str(tmp_path / "victim")

    folder = crafted(base, tmp_path, aim)
    work = tmp_path / "work"
    result = invoke(
        predict_command,
        "--model",
        folder,
        "--media",
        base["clip"],
        "--out",
        tmp_path / "x.csv",
        "--work",
        work,
        "--quiet",
    )
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == before
    made = [p.name for p in work.glob("*.h5")]
    assert made and all(len(Path(name).stem) == 16 for name in made), made
    one_line_error(result, "no cache given holds them")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda c: c["cache"]["recipe"].update(extraction=None), "extraction: must be an object"),
        (lambda c: c["cache"].update(recipe="emi extract --trust-remote-code"), "not an object"),
        (lambda c: c["cache"]["recipe"].update(streams=["fb10"]), "streams: must be an object"),
        (
            lambda c: c["cache"]["recipe"]["streams"]["fb10"].update(
                modality="evil", source="emi-extract"
            ),
            "'evil' is not one of",
        ),
        (lambda c: as_vision(c, {"fps": float("inf")}, "x/y"), "settings.fps: must be a finite"),
        (lambda c: as_vision(c, {"fps": 1e9}, "x/y"), "--fps must be in (0, 100]"),
        (lambda c: as_vision(c, {"crop": "; rm -rf /"}, "x/y"), "is not one of none, face"),
        (lambda c: c["cache"]["recipe"]["extraction"].update(layer="1; rm"), "a layer is"),
        (
            lambda c: c["cache"]["recipe"]["streams"]["fb10"].update(producer="sh -c x"),
            "producer: 'sh -c x' is not one of extract, embed-text, imported",
        ),
        (lambda c: c["cache"]["recipe"]["extraction"].update(window_seconds=1e300), "out of range"),
        (lambda c: c["cache"]["recipe"]["extraction"].update(backbone="-rf"), "-rf is not a"),
    ],
)
def test_a_crafted_recipe_is_one_line(base, tmp_path, edit, words):
    folder = crafted(base, tmp_path, edit)
    result = invoke(
        predict_command, "--model", folder, "--media", base["clip"], "--out", tmp_path / "x.csv"
    )
    one_line_error(result, words)
    assert not (tmp_path / "x-features").exists()


def test_a_crafted_cache_is_refused_by_the_runs_trained_on_it(base, tmp_path):
    cache = tmp_path / "crafted.h5"
    shutil.copy(base["cache"], cache)
    with h5py.File(cache, "a") as handle:
        attrs = handle["features/fb10"].attrs
        attrs["source"] = "emi-extract --modality vision --model openai/clip-vit-base-patch32"
        attrs["modality"] = "vision"
        attrs["settings"] = json.dumps({"fps": 5.0, "trust_remote_code": True})
        attrs["backbone"] = "openai/clip-vit-base-patch32"
    run = tmp_path / "run"
    result = invoke(
        train_command,
        cache,
        *base["labels"],
        "--head",
        "ridge",
        "--inputs",
        "frame_stats,features/fb10",
        "--out",
        run,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    result = invoke(predict_command, run, "--media", base["clip"], "--out", tmp_path / "x.csv")
    one_line_error(result, "trust_remote_code is not a setting")


@pytest.mark.parametrize(
    "ledger",
    [
        "directory",
        "[1, 2]",
        '{"recipe": "audio-2024", "steps": ["extract"]}',
        '{"recipe": "audio-2024", "steps": "rm"}',
        '{"recipe": "hallmen-2025", "steps": {}}',
    ],
)
def test_a_crafted_ledger_is_one_line_and_runs_nothing(sample_root, tmp_path, ledger):
    out = tmp_path / "out"
    out.mkdir()
    if ledger == "directory":
        (out / "recipe.json").mkdir()
    else:
        (out / "recipe.json").write_text(ledger)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emi_heads",
            "recipe",
            "audio-2024",
            str(sample_root),
            "--out",
            str(out),
            "--set",
            "audio_model=fbank",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert sorted(p.name for p in out.iterdir()) == ["recipe.json"]  # nothing ran


def test_a_crafted_transcripts_file_is_one_line(base, tmp_path):
    cache = tmp_path / "c.h5"
    shutil.copy(base["cache"], cache)
    from emi_features.cli.text import transcribe_command

    header_only = tmp_path / "t.csv"
    header_only.write_text("Filename,text\n")
    result = invoke(
        transcribe_command, base["clip"].parent, "--transcripts", header_only, "--out", cache
    )
    one_line_error(result, "no transcripts")
    outside = tmp_path / "u.csv"
    outside.write_text("Filename,text\n../../../tmp/evil,hello\n")
    result = invoke(
        transcribe_command, base["clip"].parent, "--transcripts", outside, "--out", cache
    )
    one_line_error(result, "not in")
    assert not Path("/tmp/evil").exists()
