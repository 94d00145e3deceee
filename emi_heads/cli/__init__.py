"""Every `emi` command and the `emi` group itself; each parses options and calls one function."""
