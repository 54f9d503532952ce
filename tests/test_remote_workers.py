"""A cache in object storage scanned by worker processes: the parent has used the obstore
client (its runtime's threads) before the workers start, so they must not be forked from it.

The scan runs in a child process with a time limit (a worker that waits forever fails the
test instead of hanging the suite), with the thresholds lowered so that Esri's sample cache
(three bundles) is scanned by two workers; its rows equal the local rebuild's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cachestatus import operations
from tests.helpers import SAMPLE_CACHE
from tests.remote import S3Server, make_bucket, upload
from tests.test_remote_s3 import comparable

pytest.importorskip("obstore", reason="remote caches need the cloud extra (obstore)")

SCAN = """
import sys
from cachestatus import execute, operations
execute.PARALLEL_THRESHOLD, execute.CHUNK = 1, 1
operations.rebuild(sys.argv[1], sys.argv[2], workers=2)
"""


def test_a_remote_cache_is_scanned_by_worker_processes(s3_env: S3Server, tmp_path: Path):
    url = upload(s3_env, SAMPLE_CACHE, make_bucket(s3_env, "scanned-by-workers"), "Sample")
    remote, local = tmp_path / "remote.gdb", tmp_path / "local.gdb"
    subprocess.run([sys.executable, "-c", SCAN, url, str(remote)], check=True, timeout=60)
    operations.rebuild(SAMPLE_CACHE, local, workers=1)
    assert comparable(remote) == comparable(local)
