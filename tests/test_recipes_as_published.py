"""The recipes' heads and loops are the published ones, checked by behaviour: the head each
recipe trains (its settings read from the recipe's own `emi train` command) gets the published
module's weights transplanted and gives the same outputs on the same batch (max difference
<= 1e-5), has as many parameters at the real widths, and trained from the same initial weights
on the same batches it gives the same learning rate and loss at every step as the published
loop (`published_systems.py`, rebuilt line by line from the public code)."""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from published_reference import pearson_mean
from published_systems import (
    HallmenModel,
    MimicEncoder,
    MimicFusion,
    mimic_stage,
    pad_face,
    published_audio_index,
    train_hallmen,
)
from test_preset_equivalence import assert_same_run, clip_frames, read_split

import emi_heads.training.steps as steps
import emi_heads.training.train as training
from emi_features.cache.attach import attach_streams
from emi_features.cache.reader import open_cache
from emi_features.cache.streams import clip_stream, frame_stream
from emi_heads.cli.options import build_config, build_head_config
from emi_heads.cli.train import train_command
from emi_heads.heads.base import build_head
from emi_heads.pipelines.recipes.book import RECIPES
from emi_heads.pipelines.recipes.run import plan
from emi_heads.training.config import TrainConfig

FACE_RATE = 5.0


def recipe_configs(name: str, **changes):
    """The head and training configs of the recipe's own `emi train` step, parsed by `emi train`
    itself, with `changes` (sizes shrunk for a test) applied."""
    planned = plan(RECIPES[name], "/data", Path("/out"), {}, trust_remote_code=True)
    argv = next(item.argv for item in planned if item.step.name == "train")
    context = train_command.make_context(
        "emi-train", ["--out", "/out/run", *argv[argv.index("--seed") :]]
    )
    with context:
        values = dict(context.params)
        head = build_head_config(values.pop("head"), values, {})
        train = build_config(TrainConfig, values, {})
    own = {f.name for f in fields(head)}
    head = replace(head, **{k: v for k, v in changes.items() if k in own})
    return head, replace(train, **{k: v for k, v in changes.items() if k not in own})


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- hallmen-2025
HALLMEN_NAMES = {
    "encoders.frames.lstm.": "lstm_audio.",
    "encoders.seq__features__face.lstm.": "lstm_vis.",
    "mlp.1.": "fusion_model.0.",
    "mlp.3.": "fusion_model.2.",
}


def hallmen_names(state: dict) -> dict:
    renamed = {}
    for name, value in state.items():
        prefix = next((p for p in HALLMEN_NAMES if name.startswith(p)), None)
        if prefix is not None:
            renamed[HALLMEN_NAMES[prefix] + name.removeprefix(prefix)] = value
    return renamed


def test_the_hallmen_head_is_the_published_model_at_its_real_widths():
    """At the real widths (wav2vec2 1024 + VAD 3, ViT-H 1280, gte-en-mlm-base 768) the recipe's
    head has the published model's 30,553,828 parameters; with its weights in the published
    module, the same batch gives the same predictions."""
    head, _ = recipe_configs("hallmen-2025")
    dims = {
        "frames": 1024,
        "frame_vad": 3,
        "mean": 1024,
        "frame_stats": 2048,
        "seq/features/face": 1280,
        "features/face": 2560,
        "features/text": 768,
    }
    ours = build_head(replace(head, dims=dims)).eval()
    reference = HallmenModel().eval()
    assert parameters(ours) == parameters(reference) == 30_553_828
    reference.load_state_dict(hallmen_names(ours.state_dict()))
    generator = torch.Generator().manual_seed(0)
    lengths, face_lengths = torch.tensor([9, 5, 7]), torch.tensor([4, 2, 6])
    batch = {
        "frames": torch.randn(3, 9, 1024, generator=generator),
        "frame_vad": torch.rand(3, 9, 3, generator=generator),
        "lengths": lengths,
        "seq/features/face": torch.randn(3, 6, 1280, generator=generator),
        "lengths/features/face": face_lengths,
        "features/text": torch.randn(3, 768, generator=generator),
    }
    vision, length = pad_face(
        [batch["seq/features/face"][k, :n] for k, n in enumerate(face_lengths)]
    )
    with torch.no_grad():
        expected = reference(
            torch.cat([batch["frames"], batch["frame_vad"]], -1),
            lengths,
            vision,
            length,
            batch["features/text"],
        )
        got = ours(batch).prediction
    assert (got - expected).abs().max() <= 1e-5


def test_the_published_audio_index_is_the_documented_difference():
    """The published model reads its audio state at floor(samples x T / 192000) of the padded
    batch's T frames (abaw/model.py lines 53-62): the last frame of a 12 s clip in a 12 s
    batch, but frame 103 of 249 for a 5 s clip in a batch of 5 s clips — the recipe reads each
    clip's own last frame, as its --dry-run says."""
    assert published_audio_index(torch.tensor([192_000]), 599).item() == 599
    assert published_audio_index(torch.tensor([80_000]), 249).item() == 103
    assert any("floor(samples x T / 192000)" in d for d in RECIPES["hallmen-2025"].differs)


def with_streams(synthetic, tmp_path: Path, face: int, text: int) -> Path:
    """The synthetic cache with a face frame stream (5/s) and a text clip stream added."""
    cache = tmp_path / "cache.h5"
    shutil.copy(synthetic["cache"], cache)
    with open_cache(cache) as opened:
        count = len(opened.ids)
    rng = np.random.default_rng(3)
    blocks = [
        rng.normal(size=(int(rng.integers(3, 12)), face)).astype(np.float32) for _ in range(count)
    ]
    rows = [rng.normal(size=text).astype(np.float32) * 3 for _ in range(count)]
    attrs = {"source": "test", "producer": "imported"}
    attach_streams(
        cache,
        {
            "face": frame_stream(blocks, face, {**attrs, "frame_rate": FACE_RATE}),
            "text": clip_stream(rows, text, attrs),
        },
        overwrite=False,
    )
    return cache


def spy_on_training(monkeypatch) -> dict:
    """Record the initial weights, each epoch's batches and each step's (lr, loss, weights)."""
    seen: dict = {"batches": [], "steps": []}
    build, order, step = training.build_head, steps.batch_order, steps.train_step

    def spy_build(config):
        model = build(config)
        seen["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    def spy_order(count, batch_size, generator, lengths=None):
        assert lengths is None, "batches bucketed by length; published: a plain shuffle"
        seen["batches"].append(order(count, batch_size, generator, lengths))
        return seen["batches"][-1]

    def spy_step(model, batch, target, **options):
        lr = options["optimizer"].param_groups[0]["lr"]
        loss, aux = step(model, batch, target, **options)
        seen["steps"].append(
            (lr, float(loss + aux), {k: v.clone() for k, v in model.state_dict().items()})
        )
        return loss, aux

    monkeypatch.setattr(training, "build_head", spy_build)
    monkeypatch.setattr(steps, "batch_order", spy_order)
    monkeypatch.setattr(steps, "train_step", spy_step)
    return seen


def stream_clips(cache: Path, name: str, ids: list[str]) -> list[torch.Tensor]:
    with open_cache(cache) as opened:
        stream = opened.stream(name)
        rows = [opened.index(i) for i in ids]
        if stream.kind == "clip":
            return [torch.from_numpy(stream.values[r].astype(np.float32)) for r in rows]
        return [
            torch.from_numpy(
                stream.frames[stream.offsets[r] : stream.offsets[r + 1]].astype(np.float32)
            )
            for r in rows
        ]


@pytest.mark.slow
def test_the_hallmen_recipe_trains_as_the_published_loop(synthetic, tmp_path, monkeypatch):
    cache = with_streams(synthetic, tmp_path, face=10, text=8)
    head, train = recipe_configs(
        "hallmen-2025", stream_hidden="features/face=6", mlp_hidden=12, epochs=3
    )
    seen = spy_on_training(monkeypatch)
    result = training.train(
        cache,
        [synthetic["train"]],
        synthetic["valid"],
        tmp_path / "run",
        head,
        train,
        device="cpu",
        progress=False,
    )
    with (result.run_dir / "log.csv").open() as handle:
        import csv

        seen["valid_r"] = [float(row["valid_r"]) for row in csv.DictReader(handle)]
    train_ids, train_labels = read_split(synthetic["train"])
    valid_ids, valid_labels = read_split(synthetic["valid"])

    def inputs(ids):
        audio = [torch.from_numpy(f) for f in clip_frames(cache, ids, with_vad=True, seconds=12.0)]
        return (
            audio,
            stream_clips(cache, "face", ids),
            torch.stack(stream_clips(cache, "text", ids)),
        )

    def run(model, data, index):
        audio, face, text = data
        index = index.tolist()
        frames = torch.nn.utils.rnn.pad_sequence([audio[i] for i in index], batch_first=True)
        vision, length = pad_face([face[i] for i in index])
        lengths = torch.tensor([len(audio[i]) for i in index])
        return model(frames, lengths, vision, length, text[index])

    train_data, valid_data = inputs(train_ids), inputs(valid_ids)
    model = HallmenModel(audio=19, face=10, face_hidden=6, text=8, fusion=12)
    model.load_state_dict(hallmen_names(seen["initial"]))
    record = train_hallmen(
        model,
        lambda m, i: run(m, train_data, i),
        torch.from_numpy(train_labels),
        seen["batches"],
        lambda m: run(m, valid_data, torch.arange(len(valid_ids))).numpy(),
    )
    record["valid_r"] = [pearson_mean(valid_labels, p) for p in record["valid"]]
    seen["steps"] = [(lr, loss, hallmen_names(w)) for lr, loss, w in seen["steps"]]
    assert_same_run(seen, record, lambda w: w, "weights")


# ----------------------------------------------------------------------------- mimicmetrics
def mimic_names(state: dict) -> dict:
    """concat-frames' (pool-project) names -> MimicFusion's: text, audio, face are encoders 0-2."""
    order = {"features__text": 0, "frames": 1, "features__face": 2}
    renamed = {}
    for name, value in state.items():
        part, _, rest = name.partition(".")
        if part == "fusion":
            renamed[f"mlp.{rest}"] = value
            continue
        key, _, tail = rest.partition(".")
        where = {"project": "proj", "aux_heads": "head", "attention": "attn"}[part]
        tail = tail.removeprefix("score.") if part == "attention" else tail
        renamed[f"encoders.{order[key]}.{where}.{tail}"] = value
    return renamed


def mimic_batch(generator: torch.Generator, widths=(768, 1024, 768)):
    text, audio, face = widths
    lengths, face_lengths = torch.tensor([7, 3, 5]), torch.tensor([2, 6, 4])
    batch = {
        "features/text": torch.randn(3, text, generator=generator),
        "frames": torch.randn(3, 7, audio, generator=generator),
        "lengths": lengths,
        "seq/features/face": torch.randn(3, 6, face, generator=generator),
        "lengths/features/face": face_lengths,
    }
    mask = lambda n, t: torch.arange(t)[None, :] < n[:, None]  # noqa: E731
    inputs = [
        (batch["features/text"], None),
        (batch["frames"], mask(lengths, 7)),
        (batch["seq/features/face"], mask(face_lengths, 6)),
    ]
    return batch, inputs


def test_the_mimicmetrics_head_is_the_published_model_at_its_real_widths():
    """GTE 768, wav2vec2 1024, DINOv2 768: as many parameters as the published encoders (with
    their unimodal heads) and fusion; transplanted weights give the same predictions; in
    training, the same draws drop the same encodings, rescaled alike."""
    head, _ = recipe_configs("mimicmetrics-2026")
    dims = {"frames": 1024, "features/text": 768, "seq/features/face": 768, "features/face": 1536}
    ours = build_head(replace(head, dims=dims))
    reference = MimicFusion(
        [MimicEncoder(768, pooled=False), MimicEncoder(1024), MimicEncoder(768)]
    )
    assert parameters(ours) == parameters(reference)
    reference.load_state_dict(mimic_names(ours.state_dict()))
    batch, inputs = mimic_batch(torch.Generator().manual_seed(1))
    ours.eval(), reference.eval()
    with torch.no_grad():
        assert (ours(batch).prediction - reference(inputs)).abs().max() <= 1e-5
    quiet, _ = recipe_configs("mimicmetrics-2026", dropout=0.0)
    ours = build_head(replace(quiet, dims=dims)).train()
    reference = MimicFusion(
        [
            MimicEncoder(768, dropout=0.0, pooled=False),
            MimicEncoder(1024, dropout=0.0),
            MimicEncoder(768, dropout=0.0),
        ],
        dropout=0.0,
    ).train()
    reference.load_state_dict(mimic_names(ours.state_dict()))
    with torch.no_grad():
        torch.manual_seed(11)
        expected = reference(inputs)
        torch.manual_seed(11)
        got = ours(batch).prediction
        torch.manual_seed(11)
        assert (ours.eval()(batch).prediction - got).abs().max() > 1e-3  # something was dropped
    assert (got - expected).abs().max() <= 1e-5


@pytest.mark.slow
def test_the_mimicmetrics_recipe_trains_as_the_published_stages(synthetic, tmp_path, monkeypatch):
    """Stage one as three runs (text, audio, face), each its own AdamW, plateau, best epoch and
    early stop, then the fusion with the encoders at lr x 0.05: every step's lr and loss as
    the published stages give them (the text stream is noise: its run's plateau halves the
    rate)."""
    cache = with_streams(synthetic, tmp_path, face=10, text=8)
    head, train = recipe_configs(
        "mimicmetrics-2026",
        branch_dim=6,
        mlp_hidden=5,
        dropout=0.0,
        encoding_dropout=0.0,
        unimodal_epochs=8,
        epochs=4,
        lr=3e-2,
    )
    seen = spy_on_training(monkeypatch)
    training.train(
        cache,
        [synthetic["train"]],
        synthetic["valid"],
        tmp_path / "run",
        head,
        train,
        device="cpu",
        progress=False,
    )
    train_ids, train_labels = read_split(synthetic["train"])
    valid_ids, valid_labels = read_split(synthetic["valid"])

    def inputs(ids):
        text = torch.stack(stream_clips(cache, "text", ids))
        text = text / text.norm(dim=1, keepdim=True).clamp(min=1e-12)  # S:240-242
        audio = [torch.from_numpy(f) for f in clip_frames(cache, ids, with_vad=False, seconds=None)]
        return text, audio, stream_clips(cache, "face", ids)

    def padded(clips, index):
        frames = torch.nn.utils.rnn.pad_sequence([clips[i] for i in index], batch_first=True)
        lengths = torch.tensor([len(clips[i]) for i in index])
        return frames, torch.arange(frames.shape[1])[None, :] < lengths[:, None]

    def modality(data, k, index):
        index = index.tolist()
        return (data[0][index], None) if k == 0 else padded(data[k], index)

    train_data, valid_data = inputs(train_ids), inputs(valid_ids)
    labels, every = torch.from_numpy(train_labels), torch.arange(len(valid_ids))
    targets = torch.from_numpy(valid_labels)
    encoders = [
        MimicEncoder(8, 6, 0.0, pooled=False),
        MimicEncoder(16, 6, 0.0),
        MimicEncoder(10, 6, 0.0),
    ]
    stacked = MimicFusion(encoders, hidden=5, dropout=0.0, modality_drop_prob=0.0)
    stacked.load_state_dict(mimic_names(seen["initial"]))
    record: dict[str, list] = {"lr": [], "loss": [], "valid_r": []}
    epochs = iter(seen["batches"])
    for k, encoder in enumerate(encoders):  # S:830-936
        batches = [next(epochs) for _ in range(train.unimodal_epochs)]
        mimic_stage(
            encoder,
            encoder.parameters(),
            [{"params": encoder.parameters(), "lr": 3e-2}],
            lambda i, e=encoder, k=k: e(*modality(train_data, k, i)),
            labels,
            batches,
            lambda e=encoder, k=k: e(*modality(valid_data, k, every)),
            targets,
            encoder,
            record,
        )
        encoder.head = None  # S:864, 900, 936
    stage_one = len(record["lr"])
    groups = [
        {"params": stacked.mlp.parameters(), "lr": 3e-2},
        *({"params": e.parameters(), "lr": 3e-2 * 0.05} for e in encoders),
    ]  # S:1020-1025
    fusion_batches = list(epochs)
    mimic_stage(
        stacked,
        stacked.parameters(),
        groups,
        lambda i: stacked([modality(train_data, k, i) for k in range(3)]),
        labels,
        fusion_batches,
        lambda: stacked([modality(valid_data, k, every) for k in range(3)]),
        targets,
        stacked.mlp,
        record,
    )
    assert len(seen["steps"]) == len(record["lr"]) and stage_one < len(record["lr"])
    for k, (lr, loss, _) in enumerate(seen["steps"]):
        assert lr == pytest.approx(record["lr"][k], rel=1e-9), f"lr, step {k}"
        assert loss == pytest.approx(record["loss"][k], rel=2e-4, abs=1e-6), f"loss, step {k}"
    assert min(record["lr"]) < 3e-2  # the plateau halved a rate
