"""`python -m emi_features ...` = `emi-extract ...` (the entry point for torchrun)."""

from emi_features.cli.extract import main

if __name__ == "__main__":
    main(prog_name="emi-extract")
