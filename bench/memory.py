"""Peak memory of extraction: a batch of typical clips, and one long clip (21 minutes by
default), each in a fresh process (resident set size on a CPU, torch.cuda.max_memory_allocated
on a GPU). Bounded by the window and batch, not by the clip.

And the decoding of one long video's audio track (stereo 44.1 kHz AAC, 30 minutes by default):
`load_audio`, which downmixes and resamples a chunk at a time, against decoding the whole track
first and resampling it once (what emi did before), each in a fresh process, the samples
checked equal.

python bench/memory.py [--long-minutes 21] [--decode-minutes 30] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import dataset_lengths, full_size_config, report, save_full_size_model, write_clips

CHILD = r"""
import json, resource, sys, time, torch
from emi_features.extraction.runner import extract
folder, model, out, device = sys.argv[1:5]
started = time.perf_counter()
result = extract(folder, model=model, out=out, device=device, workers=0, progress=False)
peak = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": time.perf_counter() - started, "audio_seconds": result.processed_seconds}
if torch.cuda.is_available() and device.startswith("cuda"):
    peak["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
print(json.dumps(peak))
"""


def measure(folder: Path, model: Path, out: Path, device: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(model), str(out), device],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


DECODE_CHILD = r"""
import json, resource, sys, time
import numpy as np
path, mode = sys.argv[1:3]
started = time.perf_counter()
if mode == "streamed":
    from emi_features.audio.decode import load_audio
    samples = load_audio(path)
else:  # the whole track decoded, then one downmix and one resample
    import av, soxr
    with av.open(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        chunks = [o.to_ndarray() for f in container.decode(stream) for o in resampler.resample(f)]
        rate = stream.rate
    channels = np.concatenate(chunks, axis=1)
    mono = channels.mean(axis=0, dtype=np.float64).astype(np.float32)
    samples = soxr.resample(mono, rate, 16000, quality="HQ").astype(np.float32)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - started, "samples": int(samples.size),
                  "checksum": float(np.float64(samples[::997]).sum())}))
"""


def write_long_video(path: Path, minutes: float) -> Path:
    """A video container holding only a stereo 44.1 kHz AAC track of `minutes` of noisy tones."""
    import av
    import numpy as np

    rate, block = 44_100, 44_100
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        for start in range(0, int(minutes * 60 * rate), block):
            t = (start + np.arange(block)) / rate
            tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(block)
            frame = av.AudioFrame.from_ndarray(
                np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def measure_decode(path: Path) -> list[dict]:
    rows = []
    for mode in ("whole", "streamed"):
        completed = subprocess.run(
            [sys.executable, "-c", DECODE_CHILD, str(path), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append({"decode": mode, **json.loads(completed.stdout.strip().splitlines()[-1])})
    whole, streamed = rows
    if (whole["samples"], whole["checksum"]) != (streamed["samples"], streamed["checksum"]):
        raise SystemExit(f"the streamed decode differs from the whole one: {rows}")
    streamed["peak_vs_whole"] = streamed["rss_mb"] / whole["rss_mb"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-minutes", type=float, default=21.0)
    parser.add_argument("--decode-minutes", type=float, default=30.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emi-bench-mem-"))
    model = save_full_size_model(work / "model")
    cases = {
        "typical clips (60 s, mean 7 s)": write_clips(work / "typical", dataset_lengths(60.0)),
        "one 2-minute clip": write_clips(work / "two", [120.0]),
        f"one {args.long_minutes:g}-minute clip": write_clips(
            work / "long", [args.long_minutes * 60]
        ),
    }
    rows = []
    for name, folder in cases.items():
        peak = measure(folder, model, work / f"{folder.name}.h5", args.device)
        rows.append({"case": name, **peak})
    config = full_size_config()
    frames = int(args.long_minutes * 60 * 50)
    whole = config.num_attention_heads * frames * frames * 4 / 2**30
    print(
        f"without windows, one layer's attention weights for the {args.long_minutes:g}-minute "
        f"clip alone would take {whole:.0f} GiB (fp32)"
    )
    video = write_long_video(work / "long.mp4", args.decode_minutes)
    decode = measure_decode(video)
    report(
        "memory",
        rows,
        {
            "device": args.device,
            "unwindowed_attention_gib": whole,
            "decode_minutes": args.decode_minutes,
            "decode": decode,
        },
    )
    print(f"decoding a {args.decode_minutes:g}-minute stereo 44.1 kHz AAC track:")
    for row in decode:
        print(f"  {row['decode']:<9} peak {row['rss_mb']:7.0f} MB  {row['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
