"""Benchmark: ``cachestatus rebuild`` on a two-worker Dask cluster against the local process
engine, on the same cache, in one run.

A ``dask scheduler`` and two ``dask worker --nthreads 1`` processes are started on 127.0.0.1
(Dask's own programs, as a user runs them), then both commands run alternately as whole
processes on bench_rebuild's synthetic Compact V2 cache: ``--workers 2`` (the local engine) and
``--scheduler ADDRESS``. The bar is the cluster's overhead when it has no more cores than the
local run: at most 1.3 times the local time. The scaling model the figures imply is printed
too: bundles per second per worker, the client's cost per task (measured with empty tasks on
the same cluster), and what they predict for 10^7 bundles on 32 workers against S3's request
rates (research: scale-out.md section 6.7); a prediction is labelled as one.

With ``--memory``, the client's peak RSS is measured on both engines at ``--bundles`` and ten
times as many sparse bundles (hard links of a few synthetic bundle files: the directory grows,
the disk does not); ``--sizes`` gives the numbers of sparse bundles instead (``--memory-only``:
without the timings, ``--engine`` one engine only; ``--incremental``: also the next rebuild,
incremental, after one bundle file in eight changed). The slope of peak RSS over the bundles
(least squares, KiB a bundle) is printed for each engine, with the prediction it makes for
10^7 bundles.

With ``--remote N``, the listing instead: N bundle objects in one level folder in S3 (moto's
server, in this process), each empty (a 0-byte bundle: a ``CORRUPT`` row, decided from
the listed size, so the run is its listing and its rows), rebuilt on the same cluster with the
levels listed in parts by the workers, and with the client listing them (as before: the
readers' ``lists_parts`` turned off in that process). Both alternate; the ratio is printed.
moto lists and sorts the whole folder for every request, in one Python process, so on its own
this compares request counts more than anything S3 would show. With ``--latency MS``, every
request goes through a proxy (``tests.remote.Throttling``) that waits MS milliseconds before
forwarding it, as S3's round trip does (the waits of requests in flight overlap, in threads,
and cost no CPU): the client's listing is then its pages one after the other, the parts' pages
are shared by the workers. The LIST requests of one run of each are counted, and the model
(pages x latency, one after the other, against pages / listers x latency) is printed with what
it predicts for 10^7 bundles on 32 workers.

    python benchmarks/bench_cluster.py [--bundles 20000] [--repeat 3] [--memory]
        [--sizes 200000 1000000 2000000 [--memory-only] [--engine local|dask] [--incremental]]
        [--remote 100000 [--latency 20]]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from tests.dask_cluster import dask_cluster
from tests.helpers import WEB_MERCATOR_HALF, peak_rss_kib, sparse_cache, sparse_side, write_conf
from tests.remote import S3Server, Throttling

from benchmarks.bench_rebuild import build
from benchmarks.timing import alternate, compile_package, median, runs, timed

BAR = 1.3
#: Section 6.7 of the research: GETs per second one worker sustains against S3 with 64-128
#: reads in flight, and what one partitioned prefix serves.
S3_GETS_PER_WORKER = (1_500, 3_000)
S3_GETS_PER_PREFIX = 5_500


def _nothing(i: int) -> int:
    return i


def per_task_ms(address: str, tasks: int = 2_000) -> float:
    """The client's cost per task, in ms: empty tasks mapped and taken back as they finish."""
    from distributed import Client, as_completed

    with Client(address) as client:
        start = time.perf_counter()
        for future in as_completed(client.map(_nothing, range(tasks), pure=False)):
            future.result()
        return (time.perf_counter() - start) * 1000 / tasks


#: The client listing, as before levels were listed in parts: ``cachestatus`` with the readers'
#: ``lists_parts`` turned off (argv: the command line).
CLIENT_LISTING = """
import sys
from cachestatus.formats.base import CacheReader
from cachestatus.formats.arcgis_cache import ArcGISCache
ArcGISCache.lists_parts = CacheReader.lists_parts
from cachestatus.cli import main
sys.argv[0] = "cachestatus"
main()
"""


def list_requests(proxy: Throttling) -> int:
    """The listing requests (ListObjectsV2) the proxy forwarded."""
    return sum(method == "GET" and "list-type=2" in target for method, target in proxy.requests)


def remote_listing(workdir: Path, bundles: int, repeat: int, latency_ms: float = 0) -> None:
    """The ``--remote`` case: ``bundles`` objects in one level folder in S3, rebuilt on a
    two-worker cluster with the levels listed in parts and with the client listing them; with
    ``latency_ms``, every request of the runs waits that long in a proxy first."""
    from benchmarks.bench_remote import BUCKET, put_objects, s3_server

    level, side = 15, math.ceil(math.sqrt(bundles))
    span, half = 128 * 256 * (2 * WEB_MERCATOR_HALF / 256 / 2**level), WEB_MERCATOR_HALF
    conf = write_conf(
        workdir / "remote-conf", level + 1, (-half, half - side * span, -half + side * span, half)
    )
    workers = 2
    with s3_server() as endpoint, ExitStack() as stack:
        prefix = "listing/Layers"
        keys: dict[str, Path | bytes] = {f"{prefix}/{path.name}": path for path in conf.iterdir()}
        for i in range(side * side):
            r, c = divmod(i, side)
            keys[f"{prefix}/_alllayers/L{level}/R{r * 128:04x}C{c * 128:04x}.bundle"] = b""
        print(f"uploaded {put_objects(endpoint, keys):,} objects to {endpoint}")
        proxy = None
        if latency_ms:
            moto = urlsplit(endpoint)
            assert moto.hostname and moto.port, endpoint
            proxy = Throttling(S3Server(moto.hostname, moto.port), slow=0, delay=latency_ms / 1000)
            threading.Thread(target=proxy.serve_forever, daemon=True).start()
            stack.callback(proxy.shutdown)
            # the runs and the cluster's workers (started below, with this environment)
            os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{proxy.server_address[1]}"
        url = f"s3://{BUCKET}/{prefix}"
        with dask_cluster(workdir, workers, os.environ) as address:

            def rebuild(head: list[str], tag: str) -> list[str]:
                status = workdir / f"listing-{tag}.gdb"
                return [*head, "-q", "rebuild", url, "--full", "--status", str(status),
                        "--scheduler", address]  # fmt: skip

            in_parts = rebuild([sys.executable, "-m", "cachestatus.cli"], "parts")
            on_client = rebuild([sys.executable, "-c", CLIENT_LISTING], "client")
            clients, parts = alternate(on_client, in_parts, repeat)
            pages, at_once = [], []
            if proxy is not None:
                for command in (on_client, in_parts):
                    proxy.clear()
                    timed(command)
                    pages.append(list_requests(proxy))
                    at_once.append(proxy.most_in_flight)
    client, parted = median(clients), median(parts)
    print(f"bundle objects in one level folder   {side * side:,}   (S3: moto's server)")
    if latency_ms:
        print(f"latency per request (proxy)    {latency_ms:g} ms")
    print(f"Dask, client lists the level   median {client:.3f} s   runs {runs(clients)}")
    print(f"Dask, workers list its parts   median {parted:.3f} s   runs {runs(parts)}")
    print(f"ratio parts / client listing   {parted / client:.2f}")
    if pages:
        print(f"most requests in flight, client listing {at_once[0]}, parts {at_once[1]}")
        latency_model(pages[0], pages[1], latency_ms / 1000, workers, client - parted)
    print(f"load average (1, 5, 15 min)    {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def latency_model(
    client_pages: int, part_pages: int, latency: float, listers: int, saved: float
) -> None:
    """The listing's time as its latency alone: the client's pages one after the other, the
    parts' pages shared by ``listers`` worker threads; what it says here (``saved``: measured)
    and for 10^7 bundles on 32 workers."""
    on_client, in_parts = client_pages * latency, part_pages / listers * latency
    print(f"LIST requests, client listing  {client_pages:,}   parts on the workers {part_pages:,}")
    print(
        f"model: client {client_pages} x {latency * 1000:g} ms = {on_client:.2f} s, parts "
        f"{part_pages} / {listers} listers x {latency * 1000:g} ms = {in_parts:.2f} s: "
        f"{on_client - in_parts:.2f} s saved (measured {saved:.2f} s)"
    )
    total_pages, workers = 10**4, 32
    parted_pages = total_pages * part_pages / client_pages
    print(
        f"PREDICTION (not measured): 10^7 bundles ({total_pages:,} pages) on {workers} workers, "
        f"{latency * 1000:g} ms a request: client listing {total_pages * latency / 60:.1f} min, "
        f"parts ({parted_pages:,.0f} pages, as here) {parted_pages / workers * latency:.1f} s"
    )


#: Engines whose client's memory is measured: the command line's tail that picks each.
ENGINES = ("local", "dask")


def client_memory(
    workdir: Path, sizes: list[int], engines: dict[str, list[str]], incremental: bool = False
) -> list[tuple[int, dict[str, int]]]:
    """The peak RSS (KiB) of a ``--full`` rebuild of a sparse cache of each size into a
    GeoPackage, on each engine (name to the command line's tail that picks it). Not a FileGDB:
    GDAL builds its spatial index when it closes it, in memory that grows with the rows.

    With ``incremental``, also that of the next rebuild, incremental, once one bundle file in
    eight has changed, or about (one model file in eight of those every bundle is a link to:
    8, or one per 50,000 bundles, each as many times; how many is printed)."""
    out = []
    for count in sizes:
        sparse = sparse_cache(workdir / f"sparse-{count}", count)
        hour_ago = time.time_ns() - 3600 * 10**9  # older than a racy stamp: reused once read
        models = sorted(sparse.glob("model*.bundle"), key=lambda p: int(p.stem[5:]))
        for model in models:
            os.utime(model, ns=(hour_ago, hour_ago))
        # Each model file is linked by as many bundles: one in eight of them changes.
        touched = models[1::8]
        if incremental:
            print(f"{count:,} bundles: {len(touched)} of {len(models)} bundle files change")
        peaks = {}
        for name, engine in engines.items():
            status = workdir / f"sparse-{count}-{name}.gpkg"
            command = [sys.executable, "-m", "cachestatus.cli", "-q", "rebuild", str(sparse)]
            peaks[name] = peak_rss_kib([*command, "--full", "--status", str(status), *engine])
            if incremental:
                for model in touched:
                    os.utime(model, ns=(hour_ago + 10**9, hour_ago + 10**9))
                peaks[f"{name}, incremental"] = peak_rss_kib(
                    [*command, "--status", str(status), *engine]
                )
                for model in touched:
                    os.utime(model, ns=(hour_ago, hour_ago))
            status.unlink(missing_ok=True)
        out.append((sparse_side(count) ** 2, peaks))
    return out


def memory_model(memory: list[tuple[int, dict[str, int]]], total: int = 10**7) -> None:
    """Each engine's peak RSS at each size, the slope (least squares) in KiB a bundle, and the
    peak it predicts for ``total`` bundles."""
    for count, peaks in memory:
        shown = ", ".join(f"{name} {kib / 1024:.1f} MiB" for name, kib in peaks.items())
        print(f"client peak RSS, {count:>10,} sparse bundles: {shown}")
    if len(memory) < 2:
        return
    counts = np.array([count for count, _ in memory], dtype=np.float64)
    for name in memory[0][1]:
        kib = np.array([peaks[name] for _, peaks in memory], dtype=np.float64)
        slope, intercept = np.polyfit(counts, kib, 1)
        print(
            f"  {name}: slope {slope:.4f} KiB/bundle; PREDICTION (not measured) at "
            f"{total:,} bundles: {(intercept + slope * total) / 1024:.0f} MiB"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundles", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="also the client's peak RSS")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="with --memory: sparse caches of N bundles (default: --bundles and 10 times as many)",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="the client's peak RSS only, no timings"
    )
    parser.add_argument(
        "--engine", choices=ENGINES, help="with --memory-only: this engine only (default: both)"
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="with --memory: also an incremental rebuild after one bundle file in eight changed",
    )
    parser.add_argument(
        "--remote", type=int, metavar="N", help="the listing of N bundle objects in S3 instead"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0,
        metavar="MS",
        help="with --remote: each request waits MS milliseconds in a proxy before moto",
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cachestatus-bench"
    )
    args = parser.parse_args()
    compile_package()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.remote:
        remote_listing(args.workdir, args.remote, args.repeat, args.latency)
        return 0
    sizes = args.sizes or [args.bundles, args.bundles * 10]
    if args.memory_only:
        engines = [args.engine] if args.engine else list(ENGINES)
        with ExitStack() as stack:
            tails = {"local": ["--workers", "2"]}
            if "dask" in engines:
                tails["dask"] = ["--scheduler", stack.enter_context(dask_cluster(args.workdir))]
            picked = {e: tails[e] for e in engines}
            memory_model(client_memory(args.workdir, sizes, picked, args.incremental))
        print(f"load average (1, 5, 15 min)    {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return 0
    cache = build(args.workdir, args.bundles)
    bundles = sum(1 for _ in (cache / "_alllayers" / "L15").iterdir())
    cachestatus = [sys.executable, "-m", "cachestatus.cli", "-q"]

    def rebuild(cache: Path, tag: str, *engine: str) -> list[str]:
        status = args.workdir / f"{cache.name}-{tag}.gdb"
        return [*cachestatus, "rebuild", str(cache), "--full", "--status", str(status), *engine]

    with dask_cluster(args.workdir) as address:
        local_cmd = rebuild(cache, "local", "--workers", "2")
        dask_cmd = rebuild(cache, "dask", "--scheduler", address)
        locals_, clusters = alternate(local_cmd, dask_cmd, args.repeat)
        task_ms = per_task_ms(address)
        memory = []
        if args.memory:
            engines = {"local": ["--workers", "2"], "dask": ["--scheduler", address]}
            memory = client_memory(args.workdir, sizes, engines, args.incremental)
    local, on_cluster = median(locals_), median(clusters)
    per_worker = bundles / on_cluster / 2

    print(f"bundles                      {bundles:,}")
    print(f"local engine, 2 processes    median {local:.3f} s   runs {runs(locals_)}")
    print(f"Dask, 2 workers x 1 thread   median {on_cluster:.3f} s   runs {runs(clusters)}")
    print(f"ratio cluster / local        {on_cluster / local:.2f}   (bar: <= {BAR})")
    print(f"bundles/s per Dask worker    {per_worker:,.0f}   (whole run, client start-up in)")
    print(f"client cost per task         {task_ms:.2f} ms   (empty tasks, map + as_completed)")
    memory_model(memory)

    from cachestatus.execute_dask import TASK_BUNDLES

    total, workers = 10**7, 32
    tasks = math.ceil(total / TASK_BUNDLES)
    print(f"PREDICTION (not measured): 10^7 bundles on {workers} workers, S3")
    print(
        f"  tasks of {TASK_BUNDLES:,} bundles: {tasks:,}; "
        f"client's scheduling {tasks * task_ms / 1000:.0f} s"
    )
    print(f"  CPU bound at this machine's rate: {total / (per_worker * workers) / 60:.1f} min")
    low, high = (total / (g * workers) / 60 for g in S3_GETS_PER_WORKER)
    print(
        f"  GET bound, {S3_GETS_PER_WORKER[0]:,}-{S3_GETS_PER_WORKER[1]:,} GET/s per worker: "
        f"{high:.1f}-{low:.1f} min"
    )
    print(
        f"  one unpartitioned prefix ({S3_GETS_PER_PREFIX:,} GET/s): "
        f"{total / S3_GETS_PER_PREFIX / 60:.0f} min, whatever the cluster's size"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
