"""Which VAD latent is better for the concat head: tied to the cached arousal/dominance/valence
(`supervised`), learned with no VAD target as published (`free`), or none (`off`)?

Measured on synthetic caches, where the answer depends on whether the cached VAD carries
information about the labels; two cases: VAD informative (a noisy view of three of the six
latent factors) and VAD pure noise. Mean and spread of the validation mean r over seeds.

python bench/vad_latent.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import report

from emi_features.cache.schema import ClipFeatures
from emi_features.cache.writer import CacheWriter
from emi_heads.heads.settings import head_config
from emi_heads.training.rundir import save_predictions
from emi_heads.training.train import TrainConfig, train


def synthetic_cache(path: Path, latents: np.ndarray, vad_informative: bool) -> None:
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((6, 64))
    writer = CacheWriter(
        path,
        {"backbone": "synthetic", "backbone_fingerprint": "s", "hidden_size": 64},
        overwrite=True,
    )
    clips = []
    for k, latent in enumerate(latents):
        length = int(rng.integers(20, 120))
        # the frames carry the latents weakly; the VAD strongly (if informative)
        frames = (25 * rng.standard_normal((length, 64)) + latent @ projection).astype(np.float32)
        vad = latent[:3] + 0.1 * rng.standard_normal(3) if vad_informative else rng.uniform(size=3)
        frame_vad = np.tile(vad, (length, 1)) + 0.05 * rng.standard_normal((length, 3))
        clips.append(
            ClipFeatures(
                f"{k:05d}",
                frames,
                frame_vad.astype(np.float32),
                frames.mean(axis=0),
                vad.astype(np.float32),
                length * 320 + 80,
            )
        )
    writer.write_part(clips, {})
    writer.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=600)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emi-bench-vad-"))
    latents = np.random.default_rng(1).uniform(size=(args.clips, 6))
    labels = np.round(np.clip((latents - 0.3) / 0.7, 0, 1) * 8) / 8
    ids = [f"{k:05d}" for k in range(args.clips)]
    split = int(0.7 * args.clips)
    train_csv, valid_csv = work / "train.csv", work / "valid.csv"
    save_predictions(train_csv, ids[:split], labels[:split])  # the split CSV format
    save_predictions(valid_csv, ids[split:], labels[split:])
    rows = []
    for informative in (True, False):
        cache = work / f"cache-{informative}.h5"
        synthetic_cache(cache, latents, informative)
        for mode in ("supervised", "free", "off"):
            scores = [
                train(
                    cache,
                    [train_csv],
                    valid_csv,
                    work / f"{informative}-{mode}-{seed}",
                    head_config("concat", vad_latent=mode),
                    TrainConfig(lr=1e-3, epochs=40, seed=seed),
                    progress=False,
                ).valid_r
                for seed in range(args.seeds)
            ]
            rows.append(
                {
                    "cached_vad": "informative" if informative else "noise",
                    "vad_latent": mode,
                    "valid_r_mean": float(np.mean(scores)),
                    "valid_r_std": float(np.std(scores)),
                    "seeds": args.seeds,
                }
            )
    report("vad_latent", rows)


if __name__ == "__main__":
    main()
