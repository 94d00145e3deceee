"""`emi recipe`: each published system from the media to a checked submission on the generated
sample with tiny offline encoders; the dry run, the ledger that makes a re-run continue, the
remote-code guard; and the recipes' heads against modules built as the public code builds them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from torch import nn

from emi_heads.cli.app import main as emi
from emi_heads.heads.base import build_head
from emi_heads.heads.settings import head_config
from emi_heads.pipelines.recipes.book import RECIPES

TINY = [
    "--set",
    "audio_model=fbank",
    "--set",
    "text_model=tiny-random",
    "--set",
    "image_model=tiny-random",
    "--set",
    "crop=none",
    "--set",
    "epochs=2",
]


def recipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emi_heads", "recipe", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def tiny(sample_root: Path) -> list[str]:
    return [*TINY, "--set", f"transcripts={sample_root / 'transcripts.csv'}"]


def test_list_names_every_recipe_and_what_it_downloads():
    result = CliRunner().invoke(emi, ["recipe", "--list"])
    assert result.exit_code == 0
    for name in RECIPES:
        assert name in result.output
    assert "text_model=THUDM/chatglm3-6b" in result.output
    assert "image_model=facebook/dinov2-base" in result.output


def test_dry_run_prints_the_commands_for_the_real_models_without_loading_torch():
    code = (
        "import sys; from emi_heads.cli.app import main; "
        "main(['recipe', 'casia-2026', '--dry-run', '--out', 'c'], standalone_mode=False); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("emi ")]
    assert lines[0] == "emi extract DATA --model microsoft/wavlm-large --out c/cache.h5"
    assert lines[1] == "emi transcribe DATA --model openai/whisper-large-v3 --out c/cache.h5"
    assert lines[2] == (
        "emi embed-text c/cache.h5 --model THUDM/chatglm3-6b --stream text "
        "--tokens --max-tokens 256 --special-tokens drop --empty-text '[EMPTY]' "
        "--trust-remote-code"
    )
    assert "--stream face --fps 5 --crop face" in lines[3]
    assert "--preset concat-2026" in lines[4] and "features/face=0.20" in lines[4]
    assert lines[5].startswith("emi predict c/run --cache c/cache.h5 --ids DATA/test_split.csv")
    assert "code_all/extract_chatglm3_feats.py" in result.stdout  # the settings are cited


def test_a_model_with_its_own_code_needs_the_flag(sample_root, tmp_path):
    result = recipe("casia-2026", str(sample_root), "--out", str(tmp_path / "c"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: casia-2026 loads THUDM/chatglm3-6b, which runs its own code: read that code, "
        "then pass --trust-remote-code (or --set text_model=ANOTHER_MODEL)"
    )
    assert not (tmp_path / "c").exists()


def test_bad_arguments_are_refused_in_one_line(sample_root, tmp_path):
    result = recipe("hallmen-2025", str(sample_root), "--set", "txt_model=x")
    assert result.returncode != 0
    assert "Error: --set txt_model: not a setting of hallmen-2025" in result.stderr
    assert "Traceback" not in result.stderr
    missing = recipe("audio-2024", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"Error: DATA {tmp_path / 'none'}: no such folder"
    (tmp_path / "file").write_text("")
    a_file = recipe("audio-2024", str(sample_root), "--out", str(tmp_path / "file"))
    assert a_file.returncode == 2 and "is a file" in a_file.stderr.splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "extra", "head"),
    [
        ("casia-2026", ["--set", "triplet_weight=0.05"], "concat-frames"),
        ("mimicmetrics-2026", ["--set", "unimodal_epochs=2"], "concat-frames"),
    ],
)
def test_a_recipe_runs_from_the_media_to_a_checked_submission(
    sample_root, tmp_path, name, extra, head
):
    out = tmp_path / name
    result = recipe(name, str(sample_root), "--out", str(out), *tiny(sample_root), *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{out / 'submission.csv'}: 3 clips, checked" in result.stderr
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["head"]["head"] == head
    assert set(config["head"]["dims"]) >= {"frames", "seq/features/face"}
    ledger = json.loads((out / "recipe.json").read_text())["steps"]
    assert list(ledger) == ["audio", "transcripts", "text", "face", "train", "submission"]
    if name == "mimicmetrics-2026":
        for stream in ("features/text", "frames", "features/face"):  # a run each, in order
            assert f"{stream} alone, epoch 1/2" in result.stderr
        assert config["train"]["unimodal_epochs"] == 2
        assert config["train"]["unimodal_runs"] == "separate"
        assert config["reads"]["unit_length"] == ["features/text"]
    if name == "casia-2026":
        assert config["head"]["triplet_weight"] == 0.05


@pytest.mark.slow
def test_a_failed_step_resumes_and_a_re_run_skips_what_is_done(sample_root, tmp_path):
    """hallmen-2025 end to end, its training failing first (0 epochs) and then resumed."""
    out = tmp_path / "h"
    failed = recipe(
        "hallmen-2025", str(sample_root), "--out", str(out), *tiny(sample_root), "--set", "epochs=0"
    )
    assert failed.returncode != 0
    assert (
        "Error: step train: emi-train failed: epochs, batch_size and patience must be"
        in failed.stderr
    )
    assert "the steps before it are kept: re-run to continue" in failed.stderr
    assert list(json.loads((out / "recipe.json").read_text())["steps"]) == [
        "audio",
        "transcripts",
        "text",
        "face",
    ]
    ledger_path = out / "recipe.json"  # as if the face had been extracted by hand (torchrun)
    ledger = json.loads(ledger_path.read_text())
    del ledger["steps"]["face"]
    ledger_path.write_text(json.dumps(ledger))
    resumed = recipe("hallmen-2025", str(sample_root), "--out", str(out), *tiny(sample_root))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for step in ("audio", "transcripts", "text", "face"):
        assert f"{step}: done before, skipped" in resumed.stderr
    assert f"{out / 'submission.csv'}: 3 clips, checked" in resumed.stderr
    assert "face" in json.loads(ledger_path.read_text())["steps"]  # kept and recorded
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["head"]["head"] == "streams-lstm" and config["head"]["hidden"] == 0
    assert config["head"]["stream_hidden"] == "features/face=768"
    assert {"frames", "seq/features/face", "features/text"} <= set(config["head"]["dims"])
    assert "seq/features/text" not in config["head"]["dims"]  # the text is a clip vector
    assert config["reads"]["stream_max_seconds"] == {"features/face": 80.0}
    again = recipe(
        "hallmen-2025", str(sample_root), "--out", str(out), *tiny(sample_root), "--dry-run"
    )
    assert all(line.startswith("# ") for line in again.stdout.splitlines())  # all done


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_casia_head_over_three_streams_has_the_published_shapes():
    """concat-2026 over face (768), WavLM frames (1024) and ChatGLM3 tokens (4096): the audio
    branch with its VAD module and two plain branches, each with its auxiliary head, and the
    shared head over 3 x 256, as the public code builds them (tests/published_reference.py,
    A:394-487, A:490-562, A:615-622)."""
    from published_reference import AudioVadConcatFusion, regression_head

    from emi_heads.training.presets import PRESETS

    dims = {"frames": 1024, "seq/features/face": 768, "seq/features/text-tokens": 4096}
    settings = {k: v for k, v in PRESETS["concat-2026"].head.items() if k != "head"}
    shares = "features/face=0.20,frames=0.35,features/text-tokens=0.45"
    settings.update(inputs="features/face,frames,features/text-tokens", stream_aux_weights=shares)
    ours = build_head(head_config("concat-frames", dims, **settings))
    audio = AudioVadConcatFusion(1024)
    audio_branch = parameters(audio) - parameters(audio.fusion_head)

    def plain(width: int) -> int:  # A:409-431: projection, feat_fc, auxiliary head
        return parameters(
            nn.Sequential(
                nn.LayerNorm(width),
                nn.Linear(width, 256),
                nn.LayerNorm(256),
                nn.Linear(256, 256),
                regression_head(256, 256, 0.2),
            )
        )

    fusion = parameters(regression_head(3 * 256, 256, 0.2))
    assert parameters(ours) == audio_branch + plain(768) + plain(4096) + fusion
    assert ours.aux_shares == {"features/face": 0.2, "frames": 0.35, "features/text-tokens": 0.45}


@pytest.mark.slow
def test_the_audio_only_recipe_runs_its_preset_to_a_checked_submission(sample_root, tmp_path):
    out = tmp_path / "a"
    result = recipe(
        "audio-2024",
        str(sample_root),
        "--out",
        str(out),
        "--set",
        "audio_model=fbank",
        "--set",
        "epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{out / 'submission.csv'}: 3 clips, checked" in result.stderr
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["preset"] == "lstm-2024" and config["head"]["hidden"] == 1027
    assert list(json.loads((out / "recipe.json").read_text())["steps"]) == [
        "audio",
        "train",
        "submission",
    ]
    before = (out / "submission.csv").read_text()
    retrained = recipe(
        "audio-2024",
        str(sample_root),
        "--out",
        str(out),
        "--set",
        "audio_model=fbank",
        "--set",
        "epochs=1",
        "--set",
        "seed=2",
    )
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    assert "[3/3] submission: made again (a step before it ran)" in retrained.stderr
    assert (out / "submission.csv").read_text() != before  # never the stale one
    spelled = str(sample_root.parent / "." / sample_root.name) + "/"  # the same DATA, spelled
    again = recipe(
        "audio-2024",
        spelled,
        "--out",
        str(out),
        "--set",
        "audio_model=fbank",
        "--set",
        "epochs=1",
        "--set",
        "seed=2",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("done before, skipped") == 3
    other = recipe("hallmen-2025", str(sample_root), "--out", str(out), *tiny(sample_root))
    assert other.returncode == 1
    assert "holds the recipe 'audio-2024', not hallmen-2025" in other.stderr
    assert (out / "run" / "config.json").is_file()  # the first recipe's run is kept


def test_bad_settings_and_data_are_refused_before_any_step(sample_root, tmp_path):
    for args, words in (
        (["--set", "epochs=many"], "--set epochs=many: must be a finite number"),
        (["--set", "epochs=inf"], "must be a finite number"),
        (["--set", "epochs=1.5"], "must be a whole number"),
    ):
        result = recipe("audio-2024", str(sample_root), "--out", str(tmp_path / "a"), *args)
        assert result.returncode == 1 and words in result.stderr, result.stderr
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "clip.wav").write_bytes(b"")
    result = recipe("audio-2024", str(loose), "--out", str(tmp_path / "b"))
    assert result.returncode == 1 and "no train_split.csv" in result.stderr, result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
