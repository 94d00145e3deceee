"""`python -m emi_heads train|predict ...`."""

import sys

from emi_heads.cli import predict_command, train_command

if __name__ == "__main__":
    command = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    commands = {"train": train_command, "predict": predict_command}
    if command not in commands:
        sys.exit("usage: python -m emi_heads train|predict ...")
    commands[command](prog_name=f"emi-{command}")
