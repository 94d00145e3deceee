"""Start-up of each command: how long `--help`, an argument error and `emi-predict --check`
take before they answer, against `python -c pass` and `python -c "import torch"` measured in the
same run (best of N, each in a fresh interpreter).

python bench/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

from emi_features.core.task import SUBMISSION_HEADER as HEADER


def best_of(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emi-bench-startup-"))
    (work / "ids.csv").write_text("Filename\n00001\n")
    (work / "s.csv").write_text(",".join(HEADER) + "\n00001,0,0,0,0,0,0\n")
    python = [sys.executable, "-c"]
    emi = [*python, "from emi_heads.cli.app import main; main(prog_name='emi')"]
    cases = {
        "python -c pass": [*python, "pass"],
        "python -c 'import torch'": [*python, "import torch"],
        "python -c 'import torch, transformers'": [*python, "import torch, transformers"],
        "emi --help": [*emi, "--help"],
        "emi train --help": [*emi, "train", "--help"],
        "emi train (argument error)": [*emi, "train", str(work / "s.csv"), "--head", "x"],
        "emi predict --check": [
            *emi,
            "predict",
            "--check",
            str(work / "s.csv"),
            "--ids",
            str(work / "ids.csv"),
        ],
        "emi extract --help": [*emi, "extract", "--help"],
        "emi extract --list-models": [*emi, "extract", "--list-models"],
        "import emi_heads.training.train (what emi train loads)": [
            *python,
            "import emi_heads.training.train",
        ],
        "import emi_features.extraction.runner (what emi extract loads)": [
            *python,
            "import emi_features.extraction.runner",
        ],
    }
    seconds = {name: best_of(command, args.repeats) for name, command in cases.items()}
    baseline, torch_seconds = seconds["python -c pass"], seconds["python -c 'import torch'"]
    rows = [
        {
            "command": name,
            "seconds": value,
            "over_python": value - baseline,
            "share_of_import_torch": value / torch_seconds,
        }
        for name, value in seconds.items()
    ]
    report("startup", rows, {"repeats": args.repeats})


if __name__ == "__main__":
    main()
