"""Backend adapters, one module per library; each imports its library lazily (in the cell's
constructor or methods, never at module top), so importing this package imports no framework.
Registration lives in ``rnnbench/registry.py``."""
