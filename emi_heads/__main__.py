"""`python -m emi_heads train|predict|...` = `emi train|predict|...`."""

from emi_heads.app import main

if __name__ == "__main__":
    main(prog_name="emi")
