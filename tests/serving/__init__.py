"""Tests of lesionlens.serving and lesionlens.export (a package, so its conftest does not shadow tests/conftest.py)."""
