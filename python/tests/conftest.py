"""Fixtures of the wsiseg Python tests: the repository, the `wsiseg` binary
they compare with (WSISEG_BIN, set by tests/python.rs), and a CLI runner."""

import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(os.environ.get("WSISEG_REPO", pathlib.Path(__file__).parents[2]))
BIN = os.environ.get("WSISEG_BIN", str(REPO / "target/release/wsiseg"))


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def unet():
    return REPO / "models/unet"


@pytest.fixture(scope="session")
def default_svs():
    return REPO / "tests/data/default.svs"


def run_cli(*args, cwd=None, check=True):
    """Runs `wsiseg ARGS…`; returns the CompletedProcess."""
    p = subprocess.run([BIN, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"wsiseg {args} failed: {p.stderr}")
    return p


def cli_error(*args, cwd=None):
    """The one `error:` line a failing `wsiseg ARGS…` prints, without `error: `."""
    p = run_cli(*args, cwd=cwd, check=False)
    assert p.returncode != 0, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    return lines[0][len("error: "):]


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def engine(unet):
    import wsiseg

    return wsiseg.Engine(unet, device="cpu")
