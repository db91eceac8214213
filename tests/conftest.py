"""Shared fixtures. The real-data corpus lives beside the repository (../shared/corpus);
tests that need it are skipped when it is absent."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


def _find_corpus() -> Path | None:
    for candidate in (os.environ.get("MINEWATCH_CORPUS"), REPO.parent / "shared" / "corpus", "/work/shared/corpus"):
        if candidate and Path(candidate, "README.md").exists():
            return Path(candidate)
    return None


CORPUS = _find_corpus()


@pytest.fixture(scope="session")
def corpus() -> Path:
    if CORPUS is None:
        pytest.skip("../shared/corpus is not present")
    return CORPUS
