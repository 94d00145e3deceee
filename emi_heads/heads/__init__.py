"""The heads, one module per family, and what each reads of a cache."""
