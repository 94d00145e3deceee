"""The seams: stage two stays light, the `emi` command, backbones on their own frame grids, every
config field on the command line and validated, length-bucketed batches."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_wav

from emi_features.audio.backbones import BACKBONES, load_backbone
from emi_features.cache.reader import open_cache
from emi_features.cli.extract import main as extract_command
from emi_features.extraction.frames import WAV2VEC2_GRID, FrameGrid
from emi_heads.cli.app import main as emi
from emi_heads.heads.settings import HEADS, head_config
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.training.config import InputSpec, TrainConfig
from emi_heads.training.data import batch_order, load_inputs

RUN_AND_REPORT = textwrap.dedent(
    """
    import sys
    from emi_heads.cli.app import main
    try:
        main(sys.argv[1:], prog_name="emi")
    except SystemExit as done:
        code = done.code
    else:
        code = 0
    loaded = [m for m in ("torch", "transformers") if m in sys.modules]
    print("LOADED:" + ",".join(loaded), file=sys.stderr)
    sys.exit(code)
    """
)


def run_emi(*args: str) -> subprocess.CompletedProcess:
    """`emi ARGS` in a fresh interpreter that reports which heavy modules it imported."""
    return subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def loaded(result: subprocess.CompletedProcess) -> set[str]:
    line = [x for x in result.stderr.splitlines() if x.startswith("LOADED:")][-1]
    return set(filter(None, line.removeprefix("LOADED:").split(",")))


@pytest.mark.slow
def test_importing_stage_two_never_loads_transformers():
    code = (
        "import sys, emi_heads.cli.train, emi_heads.training.train, emi_heads.use.predict,"
        " emi_heads.cli.app;"
        "print('transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.slow
def test_help_argument_errors_and_check_answer_before_torch_loads(synthetic, tmp_path):
    commands = ("train", "predict", "extract", "transcribe", "embed-text")
    for args in (["--help"], *([name, "--help"] for name in commands)):
        result = run_emi(*args)
        assert result.returncode == 0, result.stderr
        assert loaded(result) == set(), args
    bad = run_emi(
        "train",
        synthetic["cache"],
        "--train",
        synthetic["train"],
        "--head",
        "concat",
        "--out",
        tmp_path / "r",
        "--dropout",
        "1.5",
    )
    assert bad.returncode == 2 and "dropout must be in [0, 1)" in bad.stderr
    assert loaded(bad) == set() and "Traceback" not in bad.stderr
    submission = tmp_path / "s.csv"
    ids = tmp_path / "ids.csv"
    ids.write_text("Filename\n00001\n")
    submission.write_text(
        "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy\n"
        "00001,0,0,0,0,0,0\n"
    )
    check = run_emi("predict", "--check", submission, "--ids", ids)
    assert check.returncode == 0 and "valid submission, 1 rows" in check.stdout
    assert loaded(check) == set()


def test_emi_group_runs_each_tool():
    result = CliRunner().invoke(emi, ["--help"])
    assert result.exit_code == 0
    for name in ("extract", "transcribe", "embed-text", "train", "predict", "demo", "make-sample"):
        assert name in result.output
    models = CliRunner().invoke(emi, ["extract", "--list-models"])
    assert models.exit_code == 0
    for name in BACKBONES:
        assert name in models.output


@pytest.mark.slow
def test_every_config_field_is_an_option_and_checked_before_the_cache(synthetic, tmp_path):
    from dataclasses import fields

    from emi_heads.heads.settings import NOT_SETTINGS

    help_text = CliRunner().invoke(emi, ["train", "--help"]).output
    for config in (*HEADS.values(), TrainConfig):  # every head's own settings too
        for item in fields(config):
            if item.name in NOT_SETTINGS:  # set by the data (the cache, the task)
                continue
            flag = item.metadata.get("flag", item.name).replace("_", "-")
            assert f"--{flag}" in help_text, flag
    not_a_cache = tmp_path / "not-a-cache.h5"
    not_a_cache.write_text("x")
    args = ["train", str(not_a_cache), "--train", str(synthetic["train"]), "--head", "concat"]
    for extra, message in (
        (["--lr", "0"], "lr must be a positive number"),
        (["--loss", "mse+huber"], "unknown loss 'huber'"),
        (["--ridge-alphas", "1,-2", "--head", "ridge"], "ridge_alphas must be positive numbers"),
        (["--mlp-hidden", "100000000"], "mlp_hidden must be in 1..65536"),
    ):
        result = CliRunner().invoke(emi, [*args, "--out", str(tmp_path / "r"), *extra])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "not-a-cache" not in result.output  # refused before the cache was opened
    result = CliRunner().invoke(
        emi,
        [
            *args[:1],
            str(synthetic["cache"]),
            *args[2:],
            "--out",
            str(tmp_path / "ok"),
            "--mlp-hidden",
            "24",
            "--branch-dim",
            "8",
            "--warmup-fraction",
            "0.2",
            "--grad-clip",
            "0.5",
            "--epochs",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    import json

    saved = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert saved["head"]["mlp_hidden"] == 24 and saved["head"]["branch_dim"] == 8
    assert saved["train"]["warmup_fraction"] == 0.2 and saved["train"]["grad_clip"] == 0.5


def test_extract_settings_are_checked_in_one_line(tmp_path):
    write_wav(tmp_path / "a.wav", 0.5)
    result = CliRunner().invoke(
        extract_command,
        [
            str(tmp_path / "a.wav"),
            "--model",
            "fbank",
            "--out",
            str(tmp_path / "c.h5"),
            "--window-seconds",
            "3",
            "--overlap-seconds",
            "5",
        ],
    )
    assert result.exit_code == 2
    assert "--overlap-seconds must be >= 0 and less than --window-seconds" in result.output


def test_hf_grid_is_read_from_the_conv_stack(tiny_model_dir):
    assert load_backbone(str(tiny_model_dir)).grid == WAV2VEC2_GRID
    assert load_backbone("fbank").grid == WAV2VEC2_GRID


def test_a_backbone_on_a_10ms_grid_runs_end_to_end(tmp_path):
    """fbank-10ms: frames at 100/s through extraction, windows and stage two's crop."""
    folder = tmp_path / "in"
    folder.mkdir()
    lengths = {"short": 0.01, "mid": 1.3, "long": 7.7}
    for k, (name, seconds) in enumerate(lengths.items()):
        write_wav(folder / f"{name}.wav", seconds, seed=k)
    out = tmp_path / "c.h5"
    result = CliRunner().invoke(
        extract_command,
        [
            str(folder),
            "--model",
            "fbank-10ms",
            "--out",
            str(out),
            "--quiet",
            "--workers",
            "0",
            "--window-seconds",
            "2",
            "--overlap-seconds",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    grid = FrameGrid(hop=160, receptive_field=400)
    backbone = load_backbone("fbank-10ms")
    with open_cache(out) as cache:
        assert cache.attrs["frame_hop"] == 160 and cache.frames_per_second == 100.0
        for clip_id in cache.ids:
            count = len(cache.clip("frames", clip_id))
            assert count == grid.frame_count(cache.clip("num_samples", clip_id))
        # the 7.7 s clip ran in 2 s windows; fbank has no context, so windows change nothing
        wave = backbone.feature_extractor(
            __import__("soundfile").read(folder / "long.wav", dtype="float32")[0],
            sampling_rate=16_000,
            return_tensors="pt",
        )["input_values"]
        whole = backbone.encode(wave, torch.ones_like(wave)).frames[0].numpy()
        np.testing.assert_allclose(cache.clip("frames", "long"), whole, atol=0.02)
        inputs = load_inputs(cache, cache.ids, InputSpec(True, True, max_seconds=0.5))
    # stage two crops with the cache's own frame rate: 0.5 s = 50 frames at 100/s
    assert dict(zip(inputs.ids, inputs.lengths.tolist(), strict=True)) == {
        "long": 50,
        "mid": 50,
        "short": 1,
    }


def test_bucketed_batches_cover_every_clip_and_pad_less():
    lengths = torch.from_numpy(np.random.default_rng(0).integers(5, 600, size=1000))
    generator = torch.Generator().manual_seed(0)
    bucketed = batch_order(1000, 32, generator, lengths)
    plain = batch_order(1000, 32, generator)
    for batches in (bucketed, plain):
        assert sorted(torch.cat(batches).tolist()) == list(range(1000))
        assert all(len(b) <= 32 for b in batches)

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    assert padding(bucketed) < 0.2 * padding(plain)
    again = batch_order(1000, 32, generator, lengths)  # another epoch: other batches
    assert [b.tolist() for b in again] != [b.tolist() for b in bucketed]


@pytest.mark.parametrize("head", ["lstm", "concat", "ridge"])
def test_head_configs_round_trip_and_refuse_edits(head):
    config = head_config(head, {"frames": 16, "mean": 16, "frame_stats": 32})
    assert head_from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown field"):
        head_from_dict({**config.to_dict(), "surprise": 1})
    with pytest.raises(ValueError, match="hidden"):
        head_from_dict({**config.to_dict(), "hidden": "big"})


def test_every_command_shares_quiet_and_verbose_and_streams_are_one_word():
    """The README's promise: every `emi` command takes --quiet and --verbose, and a command
    that writes a stream calls it --stream."""
    from click.testing import CliRunner

    from emi_heads.cli.app import SUBCOMMANDS
    from emi_heads.cli.app import main as emi

    for name in SUBCOMMANDS:
        shown = CliRunner().invoke(emi, [name, "--help"]).output
        assert "--quiet" in shown and "--verbose" in shown, name
        if name in ("extract", "add-features", "embed-text"):
            assert "--stream" in shown and "--group" not in shown and "--name " not in shown


def _imports(package: Path) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports, at module level or inside a function (an
    `if TYPE_CHECKING:` block apart: it never runs)."""
    import ast

    def name_of(path: Path) -> str:
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def visit(node: ast.AST, module: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module:
                for alias in child.names:
                    target = f"{child.module}.{alias.name}"
                    found = target if target in modules else child.module
                    if found in modules:
                        graph[module].add(found)
            elif isinstance(child, ast.Import):
                graph[module].update(a.name for a in child.names if a.name in modules)
            visit(child, module)

    for name, path in modules.items():
        visit(ast.parse(path.read_text()), name)
    return graph


@pytest.mark.parametrize("package", ["emi_features", "emi_heads"])
def test_no_import_circle_inside_a_package(package):
    """Each shared name lives in the lowest module that needs it: no module of a package
    imports, directly or through others, a module that imports it back (lazy imports too)."""
    graph = _imports(Path(__file__).resolve().parents[1] / package)
    for start in graph:
        seen, stack = set(), [(start, [start])]
        while stack:
            module, path = stack.pop()
            for target in graph[module]:
                assert target != start, " -> ".join([*path, target])
                if target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))


@pytest.mark.parametrize("name", ["audio", "vision", "egemaps", "layers"])
def test_each_modality_loads_first_in_a_fresh_process(name):
    """Whatever is imported first (a received recipe's stream names its modality before
    anything else is loaded), no module meets another half-initialised."""
    code = (
        "from emi_features.extraction.remake import checked_settings\n"
        f"print(checked_settings({name!r}, {{}}, 'x'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
