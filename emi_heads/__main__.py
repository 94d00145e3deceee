"""`python -m emi_heads train|predict|...` = `emi train|predict|...`."""

from emi_heads.cli.app import main

if __name__ == "__main__":
    main(prog_name="emi")
