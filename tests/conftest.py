"""Shared pytest set-up.

``leakloc.cli`` and ``leakloc.phantoms`` live in ``cli/`` and ``phantoms/`` (setup.cfg
``package_dir``). With a non-editable install, ``python -m pytest`` run from the repository root
imports ``./leakloc`` (the source folder, first on ``sys.path``), which has neither: fail at once
with one line saying how to install, instead of dozens of collection errors.
"""
from __future__ import annotations

import pytest


def pytest_configure(config):
    try:
        import leakloc.cli.main  # noqa: F401
        import leakloc.phantoms  # noqa: F401
    except ModuleNotFoundError as exc:
        raise pytest.UsageError(
            f"{exc} (leakloc.cli and leakloc.phantoms come from cli/ and phantoms/); "
            "install for testing with: python3 -m pip install -e \".[test]\"")
