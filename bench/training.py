"""Training from the cache: seconds per epoch and for 30 epochs of each head on a cache the
size of the challenge's train split (8,072 clips, mean 7 s, 1024-d frames of random data, plus
1,000 validation clips), against the reference way (the backbone in the loop every epoch,
costed from its FLOPs at this machine's measured matmul rate); and concat at 1x, 2x, 4x clips.

python bench/training.py [--train-clips 8072] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import dataset_lengths, flops_per_clip, full_size_config, matmul_rate, report

from emi_features.cache.reader import open_cache
from emi_features.cache.schema import ClipFeatures
from emi_features.cache.writer import CacheWriter
from emi_features.extraction.frames import frame_count
from emi_heads.heads.base import build_head
from emi_heads.heads.settings import head_config
from emi_heads.training.config import InputSpec, TrainConfig, input_spec
from emi_heads.training.data import BUCKET_BATCHES, batch_order, load_inputs
from emi_heads.training.losses import parse_loss
from emi_heads.training.optim import Ema, ema_decay_for
from emi_heads.training.rundir import save_predictions
from emi_heads.training.steps import train_step
from emi_heads.training.train import train


def build_cache(path: Path, lengths: list[float], dim: int) -> None:
    rng = np.random.default_rng(0)
    writer = CacheWriter(
        path,
        {"backbone": "bench", "backbone_fingerprint": "random", "hidden_size": dim},
        overwrite=True,
    )
    part: list[ClipFeatures] = []
    for k, seconds in enumerate(lengths):
        count = frame_count(int(seconds * 16_000))
        frames = rng.standard_normal((count, dim), dtype=np.float32)
        part.append(
            ClipFeatures(
                f"{k:05d}",
                frames,
                rng.uniform(size=(count, 3)).astype(np.float32),
                frames.mean(axis=0),
                rng.uniform(size=3).astype(np.float32),
                int(seconds * 16_000),
            )
        )
        if len(part) == 500:
            writer.write_part(part, {})
            part = []
    if part:
        writer.write_part(part, {})
    writer.finish()


def write_labels(path: Path, ids: list[str]) -> Path:
    """Random labels quantised to eighths, in the split CSV format."""
    values = np.round(np.random.default_rng(1).uniform(size=(len(ids), 6)) * 8) / 8
    save_predictions(path, ids, values)
    return path


def lstm_flops(lengths: list[int], width: int, hidden: int, layers: int) -> float:
    """Training FLOPs of an LSTM over padded batches: forward 2 x 4H x (in + H) per step and
    layer, backward twice that."""
    per_step = sum(
        2.0 * 4 * hidden * ((width if k == 0 else hidden) + hidden) for k in range(layers)
    )
    return 3.0 * per_step * sum(lengths)


def lstm_epoch_seconds(
    cache_path: Path, ids: list[str], device: torch.device, *, bucketed: bool, batches: int = 3
) -> dict:
    """The published LSTM (hidden 1027) through the real `train_step`: time `batches` steps of
    one epoch's order over a pool of clips (random batches, or bucketed by length as training
    does), scale to an epoch. Returns seconds per epoch, the padded share, and FLOP/s."""
    train_config = TrainConfig()
    pool = ids[: train_config.batch_size * BUCKET_BATCHES]
    lstm_config = head_config("lstm", hidden=1027)
    with open_cache(cache_path) as cache:
        inputs = load_inputs(cache, pool, input_spec(lstm_config, train_config))
    model = build_head(replace(lstm_config, dims=inputs.dims)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, foreach=True)
    options = {
        "loss_fn": parse_loss(train_config.loss),
        "optimizer": optimizer,
        "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        "ema": Ema(model, ema_decay_for(train_config, 30 * len(ids) // train_config.batch_size)),
        "grad_clip": train_config.grad_clip,
        "autocast": torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
    }
    generator = torch.Generator().manual_seed(0)
    order = batch_order(
        len(inputs), train_config.batch_size, generator, inputs.lengths if bucketed else None
    )[:batches]
    targets = torch.rand(len(inputs), 6)
    lengths = inputs.lengths
    padded = [int(lengths[b].max()) * len(b) for b in order]
    real = [int(lengths[b].sum()) for b in order]
    started = time.perf_counter()
    for index in order:
        train_step(model, inputs.batch(index, device), targets[index].to(device), **options)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    flops = lstm_flops(padded, inputs.dims["frames"] + 3, 1027, 2)
    return {
        "seconds_per_epoch": seconds / batches * math.ceil(len(ids) / train_config.batch_size),
        "padded_share": 1 - sum(real) / sum(padded),
        "flops_per_second": flops / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-clips", type=int, default=8072)
    parser.add_argument("--valid-clips", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--only-lstm", action="store_true", help="Only the LSTM's random against bucketed batches."
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="emi-bench-train-"))
    lengths = dataset_lengths(7.0 * (args.train_clips + args.valid_clips), seed=2)
    lengths = lengths[: args.train_clips + args.valid_clips]
    started = time.perf_counter()
    build_cache(work / "cache.h5", lengths, args.dim)
    build_seconds = time.perf_counter() - started
    ids = [f"{k:05d}" for k in range(len(lengths))]
    train_ids, valid_ids = ids[: args.train_clips], ids[args.train_clips :]
    valid_csv = write_labels(work / "valid.csv", valid_ids)

    load_seconds = {}
    for state in ("first", "later"):  # the first load pools the frames once (kept in a sidecar)
        started = time.perf_counter()
        with open_cache(work / "cache.h5") as cache:
            load_inputs(cache, train_ids + valid_ids, InputSpec(False, True, 12.0))
        load_seconds[state] = time.perf_counter() - started

    rows = []
    for head in () if args.only_lstm else ("ridge", "concat"):
        result = train(
            work / "cache.h5",
            [write_labels(work / "train.csv", train_ids)],
            valid_csv,
            work / head,
            head_config(head),
            TrainConfig(patience=100),
            device=args.device,
            progress=False,
        )
        if head == "concat":  # the epochs' own seconds, validation included, from log.csv
            log = np.genfromtxt(work / head / "log.csv", delimiter=",", names=True)
            fit, epochs = float(log["seconds"].sum()), len(log)
        else:
            fit, epochs = result.seconds - load_seconds["later"], 1
        rows.append(
            {
                "head": head,
                "clips": len(train_ids),
                "seconds_per_epoch": fit / epochs,
                "seconds_30_epochs": fit if head == "concat" else None,
                "with_cache_load": result.seconds,
            }
        )
    config = full_size_config()
    rate = matmul_rate(device, torch.float32 if device.type == "cpu" else torch.bfloat16)
    for bucketed in (False, True):
        lstm = lstm_epoch_seconds(work / "cache.h5", train_ids, device, bucketed=bucketed)
        rows.append(
            {
                "head": f"lstm (hidden 1027, {'bucketed' if bucketed else 'random'} batches)",
                "clips": len(train_ids),
                "seconds_per_epoch": lstm["seconds_per_epoch"],
                "seconds_30_epochs": 30 * lstm["seconds_per_epoch"],
                "padded_share": lstm["padded_share"],
                "share_of_matmul_rate": lstm["flops_per_second"] / rate,
            }
        )
    backbone_flops = 3 * sum(
        flops_per_clip(config, int(s * 16_000)) for s in lengths[: args.train_clips]
    )
    reference = backbone_flops / rate
    rows.append(
        {
            "head": "reference: backbone in the loop (FLOPs at 100% matmul rate)",
            "clips": len(train_ids),
            "seconds_per_epoch": reference,
            "seconds_30_epochs": 30 * reference,
        }
    )
    for row in rows:
        row["x_faster_than_reference"] = reference / row["seconds_per_epoch"]
    for fraction in () if args.only_lstm else (4, 2, 1):  # concat at 1x, 2x, 4x the clips
        subset = train_ids[: len(train_ids) // fraction]
        result = train(
            work / "cache.h5",
            [write_labels(work / "sub.csv", subset)],
            valid_csv,
            work / f"concat-{fraction}",
            head_config("concat"),
            TrainConfig(patience=100),
            device=args.device,
            progress=False,
        )
        rows.append(
            {
                "head": f"concat on {len(subset)} clips (scaling)",
                "clips": len(subset),
                "with_cache_load": result.seconds,
            }
        )
    print(
        f"cache of {len(lengths)} clips built in {build_seconds:.0f} s; loading the clip "
        f"inputs takes {load_seconds['first']:.1f} s the first time (pooling the frames, kept "
        f"beside the cache) and {load_seconds['later']:.1f} s later; matmul "
        f"{rate / 1e9:.0f} GFLOP/s on {device}"
    )
    report(
        "training-lstm" if args.only_lstm else "training",
        rows,
        {
            "device": str(device),
            "build_seconds": build_seconds,
            "load_seconds": load_seconds,
            "matmul_gflops": rate / 1e9,
        },
    )


if __name__ == "__main__":
    main()
