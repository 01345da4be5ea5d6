"""Shared fixtures for integration tests: where the binaries under test are.

KENNEL_BUILD names the build tree (build/ or build-asan/); scripts/test sets it.
"""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def build_dir() -> pathlib.Path:
    d = pathlib.Path(os.environ.get("KENNEL_BUILD", ROOT / "build"))
    if not (d / "kennel").exists():
        pytest.fail(f"{d}/kennel is missing: run scripts/build first")
    return d


@pytest.fixture(scope="session")
def kennel(build_dir) -> str:
    return str(build_dir / "kennel")


@pytest.fixture(scope="session")
def internet():
    """The private test internet of testnet.py, for the whole session (the
    network policy tests and the server's egress tests share it: it holds
    an flock that other runs wait for)."""
    from .testnet import internet_session
    yield from internet_session()
