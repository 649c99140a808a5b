"""Test doubles of the product's seams: the executor, the registry and the container probe (under mypy)."""
