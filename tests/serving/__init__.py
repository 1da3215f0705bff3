"""Tests of lesionlens.serving (a package, so its conftest does not shadow tests/conftest.py)."""
