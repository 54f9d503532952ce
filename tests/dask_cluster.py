"""A Dask cluster made of Dask's own programs: a ``dask scheduler`` and ``dask worker``
processes on 127.0.0.1, as a user starts them (the tests' fixture and bench_cluster use it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import stop_program

DASK = Path(sys.executable).with_name("dask")


@contextmanager
def dask_cluster(
    folder: Path, workers: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """A ``dask scheduler`` and ``workers`` ``dask worker --nthreads 1`` processes (``env``
    their environment, this one's by default; this interpreter's ``sys.path`` added), stopped
    by their PIDs when the block ends. Yields the scheduler's address once every worker is up."""
    from distributed import Client

    address_file = folder / "scheduler.json"
    address_file.unlink(missing_ok=True)
    environment = {**(os.environ if env is None else env), "PYTHONPATH": os.pathsep.join(sys.path)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": environment}
    scheduler = [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    started = [subprocess.Popen([*scheduler, "--scheduler-file", str(address_file)], **quiet)]  # type: ignore[call-overload]
    try:
        for _ in range(600):
            if address_file.exists() and address_file.stat().st_size:
                break
            time.sleep(0.1)
        address = str(json.loads(address_file.read_text())["address"])
        worker = [str(DASK), "worker", address, "--nthreads", "1", "--no-dashboard"]
        where = ["--host", "127.0.0.1", "--local-directory", str(folder)]
        for _ in range(workers):
            started.append(subprocess.Popen([*worker, *where], **quiet))  # type: ignore[call-overload]
        with Client(address) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in reversed(started):
            stop_program(process)
