"""What the published systems needed of the heads, each a switch any run can use: concat-frames
over several streams (a clip stream as one step), the text-guided triplet term, two-stage
training, and layer-weighted sums over every hidden layer (`--layers all --pool stats`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from emi_features.cli.extract import main as extract_command
from emi_heads.cli.train import train_command
from emi_heads.heads.base import build_head
from emi_heads.heads.frame_concat import guided_triplet_loss
from emi_heads.heads.settings import head_config
from emi_heads.training.config import TrainConfig
from emi_heads.training.stages import fusion_groups

DIMS = {"frames": 8, "seq/features/face": 5, "features/face": 10, "features/text": 4}


def three_streams(**settings):
    config = head_config(
        "concat-frames",
        DIMS,
        inputs="frames,features/text,features/face",
        branch_dim=6,
        mlp_hidden=6,
        pool_steps=4,
        **settings,
    )
    return build_head(config)


def batch(size: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "frames": torch.randn(size, 9, 8, generator=generator),
        "lengths": torch.tensor([9, 3, 1, 9, 5][:size]),
        "features/text": torch.randn(size, 4, generator=generator),
        "seq/features/face": torch.randn(size, 6, 5, generator=generator),
        "lengths/features/face": torch.tensor([6, 6, 2, 1, 4][:size]),
    }


def test_concat_frames_fuses_frame_and_clip_streams_with_a_head_each():
    head = three_streams(standardize=False)
    output = head(batch())
    assert output.prediction.shape == (5, 6)
    assert set(output.aux) >= {"branch/frames", "branch/features/text", "branch/features/face"}
    assert head.fusion[1].in_features == 3 * 6
    assert head.project["features__face"][1].in_features == 5  # the frame stream, not its stats
    assert head.vad_head is not None  # the latent stays on the acoustic frames


def test_the_triplet_term_is_zero_when_the_fused_space_agrees_with_the_guide():
    guide = torch.tensor([[0.0], [1.0], [10.0]])
    assert guided_triplet_loss(guide.clone(), guide, margin=0.0) == 0
    # clips 0 and 1 are neighbours in the text; in the fused space 0 is far from 1, near 2
    fused = torch.tensor([[0.0], [10.0], [1.0]], requires_grad=True)
    loss = guided_triplet_loss(fused, guide, margin=0.1)
    assert loss > 0
    loss.backward()
    with torch.no_grad():
        stepped = fused - 0.01 * fused.grad
    assert guided_triplet_loss(stepped, guide, margin=0.1) < loss  # its gradient fixes it


def test_the_triplet_term_trains_and_reads_its_guide_stream():
    head = three_streams(triplet_weight=0.5, standardize=False)
    head.train()
    data = batch()
    output = head(data)
    target = torch.rand(5, 6)
    with_term = head.auxiliary_loss(output, data, target, torch.nn.functional.mse_loss)
    head_off = three_streams(standardize=False)
    head_off.load_state_dict(head.state_dict())
    without = head_off.auxiliary_loss(head_off(data), data, target, torch.nn.functional.mse_loss)
    assert with_term > without


def test_two_stage_training_freezes_the_branches_or_slows_them():
    head = three_streams()
    frozen = fusion_groups(head, TrainConfig(unimodal_epochs=2, encoder_lr_scale=0.0, lr=1e-3))
    fusion = {id(p) for p in head.fusion.parameters()}
    assert len(frozen) == 1 and {id(p) for p in frozen[0]["params"]} == fusion
    assert not any(p.requires_grad for p in head.project.parameters())
    slowed = fusion_groups(
        three_streams(), TrainConfig(unimodal_epochs=2, encoder_lr_scale=0.05, lr=1e-3)
    )
    assert [group["lr"] for group in slowed] == [1e-3, pytest.approx(5e-5)]


def test_unimodal_epochs_need_a_head_with_branches():
    from types import SimpleNamespace

    from emi_heads.training.stages import train_branches_first

    job = SimpleNamespace(
        model=torch.nn.Linear(2, 2),
        head=SimpleNamespace(name="lstm"),
        config=TrainConfig(unimodal_epochs=2),
    )
    with pytest.raises(ValueError, match="the lstm head has no per-stream branches"):
        train_branches_first(job)


@pytest.mark.slow
def test_every_layer_pooled_then_weighted(sample_root, tiny_model_dir, tmp_path):
    """`--layers all --pool stats` stores each hidden layer's clip mean and sd, as computed from
    the encoder's hidden states directly; `--layer-weights` learns a softmax weight per layer,
    saved and plotted in the run."""
    from emi_features.audio.backbones import load_backbone
    from emi_features.audio.decode import load_audio
    from emi_features.cache.reader import open_cache
    from emi_features.core.dataset import find_clips

    out = tmp_path / "c.h5"
    base = [str(sample_root), "--out", str(out), "--quiet", "--workers", "0"]
    assert CliRunner().invoke(extract_command, [*base, "--model", "fbank"]).exit_code == 0
    lone = CliRunner().invoke(extract_command, [*base, "--stream", "x", "--pool", "stats"])
    assert lone.exit_code == 2 and "--layers all and --pool stats go together" in lone.output
    args = [
        *base,
        "--model",
        str(tiny_model_dir),
        "--stream",
        "layers",
        "--layers",
        "all",
        "--pool",
        "stats",
    ]
    result = CliRunner().invoke(extract_command, args)
    assert result.exit_code == 0, result.output
    backbone = load_backbone(str(tiny_model_dir))
    count, width = backbone.encoder.config.num_hidden_layers + 1, backbone.hidden_size
    with open_cache(out) as cache:
        stream = cache.stream_view("layers")
        assert stream.kind == "clip" and int(stream.attrs["layers"]) == count
        values = stream.values[()]
        clip_id, row = cache.ids[0], 0
    assert values.shape[1] == count * 2 * width
    clip = next(c for c in find_clips(sample_root) if c.id == clip_id)  # as the extractor does
    wave = load_audio(clip.path)
    inputs = backbone.feature_extractor(wave, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        states = backbone.encoder(inputs["input_values"], output_hidden_states=True).hidden_states
    expected = torch.cat(
        [torch.stack(states)[:, 0].mean(1), torch.stack(states)[:, 0].std(1, unbiased=False)], dim=1
    )
    np.testing.assert_allclose(
        values[row].reshape(count, 2 * width), expected.numpy(), rtol=1e-4, atol=1e-5
    )
    run = tmp_path / "run"
    train = [
        str(out),
        "--train",
        str(sample_root / "train_split.csv"),
        "--valid",
        str(sample_root / "valid_split.csv"),
        "--head",
        "concat",
        "--inputs",
        "features/layers",
        "--layer-weights",
        "--epochs",
        "3",
        "--out",
        str(run),
        "--quiet",
    ]
    trained = CliRunner().invoke(train_command, train)
    assert trained.exit_code == 0, trained.output
    weights = json.loads((run / "layer_weights.json").read_text())["features/layers"]
    assert len(weights) == count and sum(weights) == pytest.approx(1.0)
    assert (run / "layer_weights.png").stat().st_size > 0
