"""Benchmark: a whole ``cachestatus rebuild s3://...`` process against the floor of its reads.

One run starts one S3 server (moto's, on 127.0.0.1) and uploads a synthetic Compact V2 cache
to it once (real headers and indexes; one-byte tiles keep the objects small). The floor is one
process with the same client library (obstore) that lists the bundles and reads
``min(131,136, size)`` header+index bytes of each, with as many reads in flight as the rebuild
has in all its workers, nothing else. Both run alternately, several times; the medians are
compared. The listing alone is timed too.

The reads in flight per worker are ``--io-concurrency``, passed to the rebuild when its command
line has that option; without it, each worker reads one bundle at a time, and the two sides'
reads in flight are printed as they differ. The rebuild reads every bundle on every run
(``--full``, where the command line has it: an incremental rebuild would read none).

    python benchmarks/bench_remote.py [--bundles 2000] [--repeat 3] [--io-concurrency 64]
        [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from tests.helpers import synthetic_cache, synthetic_sizes

from benchmarks.timing import alternate, compile_package, median, runs, timed

BUCKET = "bench-remote"
LEVEL = 15
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}

# The floor: list the bundles, then read each one's header and index with ``inflight`` reads
# in flight (argv: endpoint, bucket, prefix, inflight; inflight 0 lists only).
FLOOR = """
import asyncio, os, sys, obstore
from obstore.store import S3Store
endpoint, bucket, prefix, inflight = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = S3Store(bucket, config={"endpoint": endpoint}, client_options={"allow_http": True})
bundles = [
    (meta["path"], meta["size"])
    for batch in obstore.list(store, prefix)
    for meta in batch
    if meta["path"].endswith(".bundle")
]

async def read_all():
    gate = asyncio.Semaphore(inflight)

    async def read(key, size):
        async with gate:
            return len(await obstore.get_range_async(store, key, start=0, length=min(131136, size)))

    return sum(await asyncio.gather(*(read(key, size) for key, size in bundles)))

print(len(bundles), asyncio.run(read_all()) if inflight else 0, flush=True)
os._exit(0)  # obstore's runtime threads now and then abort the interpreter's own shutdown
"""


def one_byte_tiles(rng: np.random.Generator) -> np.ndarray:
    """The tiles a synthetic bundle has, each one byte long (the index is what is read)."""
    return np.minimum(synthetic_sizes(rng), 1)


def build(root: Path, bundles: int) -> Path:
    """A square block of at least ``bundles`` small synthetic bundles (built once)."""
    side = math.ceil(math.sqrt(bundles))
    cache = root / f"remote-v2-{side * side}"
    if not (cache / "conf.xml").exists():
        print(f"building {side * side:,} bundles in {cache} ...", file=sys.stderr)
        synthetic_cache(cache, side, level=LEVEL, sizes=one_byte_tiles)
    return cache


def upload(endpoint: str, cache: Path, prefix: str) -> int:
    """Every file of ``cache`` put under ``prefix`` in a new bucket; how many."""
    files = sorted(path for path in cache.rglob("*") if path.is_file())
    return put_objects(endpoint, {f"{prefix}/{p.relative_to(cache).as_posix()}": p for p in files})


def put_objects(endpoint: str, objects: dict[str, Path | bytes]) -> int:
    """Each object put at its key in a new bucket (a file's bytes read when it is put), 32 at a
    time; how many."""
    import boto3
    import obstore
    from obstore.store import S3Store

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    store = S3Store(BUCKET, config={"endpoint": endpoint}, client_options={"allow_http": True})

    async def put_all() -> None:
        gate = asyncio.Semaphore(32)

        async def put(key: str, data: Path | bytes) -> Any:
            async with gate:
                body = data.read_bytes() if isinstance(data, Path) else data
                return await obstore.put_async(store, key, body)

        await asyncio.gather(*(put(key, data) for key, data in objects.items()))

    asyncio.run(put_all())
    return len(objects)


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, this process's environment (and so the runs') pointed at
    it with the benchmark's keys; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(KEYS, AWS_ENDPOINT_URL=endpoint)
        yield endpoint
    finally:
        server.stop()


def check(floor_cmd: list[str], rebuild_cmd: list[str], bundles: int) -> None:
    """Fail unless the floor and the rebuild each see every bundle (and the rebuild its tiles)."""
    out = subprocess.run(floor_cmd, check=True, capture_output=True, text=True).stdout
    assert int(out.split()[0]) == bundles, out
    out = subprocess.run([*rebuild_cmd, "--json"], check=True, capture_output=True).stdout
    totals = json.loads(out)["totals"]
    assert totals["bundles"] == bundles and totals["tiles_present"] > 0, totals


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundles", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--io-concurrency", type=int, default=64, help="reads in flight per worker process"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = build(args.workdir, args.bundles)
    bundles = sum(1 for _ in (cache / "_alllayers" / f"L{LEVEL:02d}").iterdir())

    with s3_server() as endpoint:
        prefix = f"arcgiscache/{cache.name}/Layers"
        print(f"uploaded {upload(endpoint, cache, prefix):,} objects to {endpoint}")

        cachestatus = [sys.executable, "-m", "cachestatus.cli", "-q"]
        help_text = subprocess.run(
            [*cachestatus, "rebuild", "--help"], check=True, capture_output=True, text=True
        ).stdout
        threaded = "--io-concurrency" in help_text
        per_worker = args.io_concurrency if threaded else 1
        inflight = args.workers * args.io_concurrency
        status = args.workdir / f"{cache.name}-remote-status.gdb"
        rebuild_cmd = [
            *cachestatus,
            "rebuild",
            f"s3://{BUCKET}/{prefix}",
            "--status",
            str(status),
            "--workers",
            str(args.workers),
            *(["--io-concurrency", str(args.io_concurrency)] if threaded else []),
            *(["--full"] if "--full" in help_text else []),  # read every bundle, every run
        ]
        floor_cmd = [sys.executable, "-c", FLOOR, endpoint, BUCKET, prefix, str(inflight)]
        listing_cmd = [*floor_cmd[:-1], "0"]
        check(floor_cmd, rebuild_cmd, bundles)
        floors, rebuilds = alternate(floor_cmd, rebuild_cmd, args.repeat)
        listings = [timed(listing_cmd) for _ in range(args.repeat)]

    floor, rebuild = median(floors), median(rebuilds)
    print(f"bundles                 {bundles:,}")
    note = "" if threaded else "   (this rebuild has no --io-concurrency)"
    print(f"reads in flight         floor {inflight}   rebuild {args.workers} x {per_worker}{note}")
    print(f"listing alone           median {median(listings):.3f} s   runs {runs(listings)}")
    print(
        f"floor (list + reads)    median {floor:.3f} s   runs {runs(floors)}   "
        f"{bundles / floor:,.0f} bundles/s"
    )
    print(
        f"cachestatus rebuild     median {rebuild:.3f} s   runs {runs(rebuilds)}   "
        f"{bundles / rebuild:,.0f} bundles/s"
    )
    print(f"ratio rebuild / floor   {rebuild / floor:.2f}   (bar: <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
