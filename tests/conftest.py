from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed seed: a run is reproducible, and a new random example
# found later, on a developer's machine, is what reports a new edge case. "fuzz" is the long run
# for local use: HYPOTHESIS_PROFILE=fuzz .venv/bin/pytest tests/test_fuzz.py
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=200)
settings.register_profile("fuzz", max_examples=20_000)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif os.environ.get("CI"):
    settings.load_profile("ci")

sys.path.insert(0, str(Path(__file__).parent.parent))

from benchmarks.timing import compile_package  # noqa: E402 - after the path is set

from tests.helpers import copy_sample, synthetic_cache  # noqa: E402
from tests.remote import in_tmp, s3, s3_env  # noqa: E402, F401 - the S3 server's fixtures


def pytest_sessionstart(session: pytest.Session) -> None:
    """The package byte-compiled once, as installing it does: the hundreds of processes the
    tests start (the command line, spawned workers, Dask workers) import it, and where
    PYTHONDONTWRITEBYTECODE is set (CI images) each would compile it again, 0.2-0.4 s apiece."""
    compile_package()


#: 12,100 bundles: a rebuild of a few seconds, in two workers or on two one-thread Dask workers.
BIG_SIDE = 110


@pytest.fixture(scope="session")
def big_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete ``BIG_SIDE`` x ``BIG_SIDE`` block of synthetic bundles at level 12: a run long
    enough to interrupt at any moment. Built once for the modules that interrupt it (about 8 s
    of file creation), never written: no command writes in a cache."""
    return synthetic_cache(tmp_path_factory.mktemp("big") / "cache", BIG_SIDE, level=12)


@pytest.fixture(scope="session")
def dask_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, in this process's
    environment (no storage credentials), started once for the modules that need no other
    (each start is 5-15 s) and stopped by their PIDs at the session's end."""
    pytest.importorskip("distributed")
    from tests.dask_cluster import dask_cluster

    with dask_cluster(tmp_path_factory.mktemp("cluster"), 2) as address:
        yield address


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A writable copy of Esri's sample Compact V2 cache."""
    return copy_sample(tmp_path / "sample_cache")


#: Set by .ci/run: programs the suite needs that pip cannot install (Debian's GDAL, a browser...)
#: must be there, and a missing one fails its tests instead of skipping them.
REQUIRE_EXTERNAL = bool(os.environ.get("CACHESTATUS_REQUIRE_EXTERNAL"))


def need_program(path: str, how: str) -> str:
    """``path`` when that program is installed; otherwise skip the test, saying how to get it
    (or fail, in CI, where .ci/run installs it)."""
    import shutil

    found = shutil.which(path)
    if found is None:
        message = f"{path} is not installed ({how})"
        if REQUIRE_EXTERNAL:
            pytest.fail(message + "; CACHESTATUS_REQUIRE_EXTERNAL is set, so it must be")
        pytest.skip(message)
    return found
