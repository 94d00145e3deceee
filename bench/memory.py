"""Peak memory of extraction: a batch of typical clips, and one long clip (21 minutes by
default), each in a fresh process (resident set size on a CPU, torch.cuda.max_memory_allocated
on a GPU). Bounded by the window and batch, not by the clip.

python bench/memory.py [--long-minutes 21] [--device cpu|cuda]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-minutes", type=float, default=21.0)
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
    report("memory", rows, {"device": args.device, "unwindowed_attention_gib": whole})


if __name__ == "__main__":
    main()
