"""Shared test fixtures.

Real datasets live in ``../shared/data`` beside the repository (see its README.md).
Tests that need them use the ``shared_data`` fixture: on CI (``CI=true``) a missing folder
is a failure, elsewhere the test is skipped with a message saying where the data goes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        msg = f"shared datasets not found at {SHARED_DATA} (clone with ../shared beside the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture
def one_error_line(capsys):
    """Check that the command printed exactly one ``analogtrain: error:`` line and no traceback;
    return that line."""

    def check() -> str:
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err and "Traceback" not in captured.out
        err = captured.err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("analogtrain: error:"), err
        return err[0]

    return check


def fresh_compilation() -> None:
    """Forget every torch.compile graph this process has made.

    Which kernels torch.compile makes (static or dynamic shapes, where a vector loop's scalar
    tail falls) depends on the shapes it has already seen in the process, and vector and scalar
    exp differ in the last bit.  A compiled chip is bit for bit the same alone and in a batch
    for a fixed compilation history, so the tests that check that start from none, as a new
    process does, whatever ran before them.
    """
    import torch._dynamo

    torch._dynamo.reset()
