"""Prefect flows and the `simpo` command line (the top of the import graph)."""
