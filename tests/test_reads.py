"""Reads in flight: ``--io-concurrency`` from the command line to the threads that read in a
worker, network shares told from ``/proc/mounts``, and the kernel's read-ahead turned off for
index reads."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import cachestatus
from cachestatus import parallel
from cachestatus.cli import main
from cachestatus.errors import UsageError
from cachestatus.execute import ChunkContext, ProcessPool
from cachestatus.formats import arcgis_layout, open_cache
from cachestatus.formats.arcgis_cache import ArcGISCache
from cachestatus.formats.base import BundleFile, BundleIndex
from cachestatus.formats.bytesource import LocalFile
from cachestatus.formats.compact_v2 import HEADER_INDEX_SIZE
from cachestatus.plan import ScanPolicy, plan_levels
from cachestatus.request import Execution
from cachestatus.scan import ScanBatch, list_plans, scan_chunk
from tests.helpers import synthetic_cache
from tests.status_rows import rows_in_order

LEVEL = 5


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nine Compact V2 bundles."""
    return synthetic_cache(tmp_path_factory.mktemp("reads") / "cache", 3, level=LEVEL)


class Calls:
    """What the reads of bundles did: the threads they ran on, and the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.threads: set[int] = set()

    def wrap(
        self, read: Callable[[ArcGISCache, BundleFile], BundleIndex]
    ) -> Callable[[ArcGISCache, BundleFile], BundleIndex]:
        """``read``, counted; each call lasts long enough for others to start meanwhile."""

        def read_bundle(reader: ArcGISCache, bundle: BundleFile) -> BundleIndex:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
                self.threads.add(threading.get_ident())
            try:
                time.sleep(0.01)
                return read(reader, bundle)
            finally:
                with self.lock:
                    self.now -= 1

        return read_bundle


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every bundle read of an ArcGIS cache, counted."""
    found = Calls()
    monkeypatch.setattr(ArcGISCache, "read_bundle", found.wrap(ArcGISCache.read_bundle))
    return found


def _rebuild(cache: Path, status: Path, *options: str) -> dict:
    args = ["rebuild", str(cache), "--status", str(status), "--workers", "1", "--json", *options]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_option_puts_reads_in_flight_on_threads(cache, calls, tmp_path):
    _rebuild(cache, tmp_path / "s.gdb", "--io-concurrency", "4")
    assert 1 < calls.most <= 4
    assert threading.get_ident() not in calls.threads


@pytest.mark.parametrize("options", [["--io-concurrency", "1"], []], ids=["one", "default"])
def test_one_read_in_flight_reads_in_the_calling_thread(cache, calls, tmp_path, options):
    _rebuild(cache, tmp_path / "s.gdb", *options)
    assert calls.most == 1
    assert calls.threads == {threading.get_ident()}


def test_rows_are_the_same_whatever_the_reads_in_flight(cache, tmp_path):
    one = cachestatus.rebuild(cache, tmp_path / "one.gdb", workers=1, io_concurrency=1)
    many = cachestatus.rebuild(cache, tmp_path / "many.gdb", workers=1, io_concurrency=8)
    assert rows_in_order(many.status_path) == rows_in_order(one.status_path)
    assert many.levels == one.levels


def _scan_counted(context: ChunkContext, bundles: list[BundleFile]) -> tuple[int, int, int, int]:
    """In a worker process: the chunk scanned with its reads counted (the worker's class is
    patched, not the test's); the process, its reads in flight, the most at once, the rows."""
    found = Calls()
    read = ArcGISCache.read_bundle
    ArcGISCache.read_bundle = found.wrap(read)  # type: ignore[method-assign]
    try:
        batch: ScanBatch = scan_chunk(context, bundles)
    finally:
        ArcGISCache.read_bundle = read  # type: ignore[method-assign]
    return os.getpid(), context.io_concurrency, found.most, len(batch)


def test_worker_processes_get_their_reads_in_flight(cache):
    with open_cache(cache) as reader:
        plans = plan_levels(reader, [LEVEL])
        policy = ScanPolicy.rebuild()
        bundles = list(list_plans(reader, plans, policy).bundles())
        with ProcessPool(reader, plans, policy, 2, io_concurrency=3) as pool:
            assert pool.size_for(100_000) == 2  # as many bundles as a scan worth processes
            results = list(pool.map(_scan_counted, [bundles, bundles]))
    for pid, in_flight, most, rows in results:
        assert pid != os.getpid()
        assert in_flight == 3
        assert 1 < most <= 3
        assert rows == len(bundles)


@pytest.mark.parametrize("command", ["rebuild", "report", "missing", "verify"])
def test_no_read_in_flight_is_a_usage_error(cache, tmp_path, command):
    args = [command, str(cache), "--io-concurrency", "0"]
    if command == "report":
        args += ["--out", str(tmp_path / "report")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--io-concurrency" in result.output
    assert not (cache / "Status.gdb").exists()


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "8"])
def test_the_api_refuses_what_is_not_a_count_of_reads(cache, tmp_path, value):
    with pytest.raises(UsageError, match="io_concurrency="):
        cachestatus.rebuild(cache, tmp_path / "s.gdb", workers=1, io_concurrency=value)
    assert not (tmp_path / "s.gdb").exists()


def test_execution_keeps_its_reads_in_flight_in_json():
    data = json.loads(json.dumps(Execution(workers=2, io_concurrency=8).to_json()))
    assert data["io_concurrency"] == 8 and data["workers"] == 2
    assert Execution.from_json(data) == Execution(2, io_concurrency=8)
    assert Execution.from_json({"workers": 2}).io_concurrency is None  # jobs before it


MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
fileserver:/export/gis /mnt/gis nfs4 rw,relatime,vers=4.2 0 0
/dev/vdb /mnt/gis/local ext4 rw,relatime 0 0
//winserver/arcgis\\040caches /mnt/arcgis\\040caches cifs rw,relatime,vers=3.1.1 0 0
tmpfs /mnt/gisx tmpfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/mnt/gis", "nfs4"),
        ("/mnt/gis/arcgiscache/Layers/conf.xml", "nfs4"),
        ("/mnt/gis/local/cache", "ext4"),  # a disk mounted inside the share
        ("/mnt/gisx/cache", "tmpfs"),  # a name that only starts like the share's
        ("/mnt/arcgis caches/Basemap/Layers", "cifs"),  # \040 is a space
        ("/home/user/cache", "ext4"),
    ],
)
def test_the_mount_of_a_path_is_the_longest_mount_point_holding_it(path, kind):
    assert parallel.mount_type(path, MOUNTS) == kind


def test_a_later_mount_on_the_same_point_hides_the_earlier():
    mounts = "/dev/vdb /data ext4 rw 0 0\nnas:/gis /data nfs rw 0 0\n"
    assert parallel.mount_type("/data/cache", mounts) == "nfs"
    assert parallel.mount_type("/data/cache", "") is None


def test_a_unc_path_is_a_share():
    assert parallel.on_network_share(r"\\fileserver\arcgisserver\directories")
    assert not parallel.on_network_share(os.getcwd())  # the tests run on a local disk


def test_the_default_reads_in_flight_follow_the_storage(cache, monkeypatch):
    with open_cache(cache) as reader:
        assert parallel.resolve_io_concurrency(None, reader) == 1
        assert parallel.resolve_io_concurrency(5, reader) == 5
        monkeypatch.setattr(parallel, "on_network_share", lambda path: path == reader.root)
        assert parallel.resolve_io_concurrency(None, reader) == parallel.SHARE_IO_CONCURRENCY
        assert parallel.resolve_io_concurrency(2, reader) == 2
        monkeypatch.setattr(reader, "io_concurrency", 64)  # object storage says its own
        assert parallel.resolve_io_concurrency(None, reader) == 64


@pytest.fixture
def advised(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int, int, int]]]:
    """Every ``posix_fadvise`` call, made for real too."""
    if not hasattr(os, "posix_fadvise"):
        pytest.skip("no posix_fadvise on this platform")
    calls: list[tuple[int, int, int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((fd, offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    yield calls


def test_index_reads_turn_read_ahead_off(cache, advised, monkeypatch):
    with open_cache(cache) as reader:
        bundle = next(b for b in reader.list_bundles(LEVEL) if isinstance(b, BundleFile))
        opened: list[int] = []
        real_init = LocalFile.__init__

        def init(source: LocalFile, path: str) -> None:
            real_init(source, path)
            opened.append(source._fd)

        monkeypatch.setattr(LocalFile, "__init__", init)
        index = reader.read_bundle(bundle)
        tiles = index.tiles
        assert advised == [(opened[0], 0, 0, os.POSIX_FADV_RANDOM)]
        # Reading every tile in file order keeps the read-ahead: it serves those reads.
        assert sum(1 for _ in reader.read_tiles(bundle)) == tiles
        assert len(advised) == 1


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_a_list_read_in_one_thread_asks_for_the_next_indexes_first(cache, advised, monkeypatch):
    monkeypatch.setattr(arcgis_layout, "READ_AHEAD", 2)
    events: list[tuple[str, str]] = []
    asked: list[tuple[int, int]] = []
    record = os.posix_fadvise  # the fixture's: made for real, recorded there

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_WILLNEED:
            events.append(("ahead", os.readlink(f"/proc/self/fd/{fd}")))
            asked.append((offset, length))
        record(fd, offset, length, advice)

    real_read = ArcGISCache.read_bundle

    def read_bundle(reader: ArcGISCache, bundle: BundleFile) -> BundleIndex:
        events.append(("read", bundle.path))
        return real_read(reader, bundle)

    monkeypatch.setattr(os, "posix_fadvise", fadvise)
    monkeypatch.setattr(ArcGISCache, "read_bundle", read_bundle)
    monkeypatch.setattr(LocalFile, "in_memory", lambda source: False)  # a cold disk
    with open_cache(cache) as reader:
        plans = {p.lod.level: p for p in plan_levels(reader, [LEVEL])}
        bundles = list(list_plans(reader, list(plans.values()), ScanPolicy.rebuild()).bundles())
        before = _open_fds()
        batch = scan_chunk(ChunkContext(reader, plans), bundles)
        assert _open_fds() == before  # every file opened ahead was read, then closed
    paths = [b.path for b in bundles]
    assert sorted(path for kind, path in events if kind == "ahead") == sorted(paths)
    assert set(asked) == {(0, HEADER_INDEX_SIZE)}  # a header and index each
    for i, path in enumerate(paths):  # the bundle two ahead is asked for before one is read
        later = paths[min(i + 2, len(paths) - 1)]
        assert events.index(("ahead", later)) < events.index(("read", path))
    # The same rows as reads made one after the other, nothing asked ahead.
    monkeypatch.setattr(arcgis_layout, "FADVISE_WILLNEED", None)
    with open_cache(cache) as reader:
        plain = scan_chunk(ChunkContext(reader, plans), bundles)
    assert sum(kind == "ahead" for kind, _ in events) == len(paths)  # none the second time
    assert list(batch.rows.statuses()) == list(plain.rows.statuses())


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_files_in_memory_are_not_read_ahead(cache, advised, monkeypatch):
    monkeypatch.setattr(arcgis_layout, "READ_AHEAD", 4)
    asked: list[str] = []

    def in_memory(source: LocalFile) -> bool:
        asked.append(os.readlink(f"/proc/self/fd/{source._fd}"))
        return True

    monkeypatch.setattr(LocalFile, "in_memory", in_memory)
    with open_cache(cache) as reader:
        plans = {p.lod.level: p for p in plan_levels(reader, [LEVEL])}
        bundles = list(list_plans(reader, list(plans.values()), ScanPolicy.rebuild()).bundles())
        scan_chunk(ChunkContext(reader, plans), bundles)
    assert not [call for call in advised if call[3] == os.POSIX_FADV_WILLNEED]
    paths = [b.path for b in bundles]
    assert asked == [paths[0], paths[4], paths[8]]  # every 4th file opened is asked


def _first_page_resident(path: Path) -> bool:
    """Whether the kernel holds the file's first page in memory, as ``mincore(2)`` tells of a
    mapping of it that touches no page: evidence of the kernel's own, apart from the probe."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        try:
            pages = (ctypes.c_ubyte * 1)()
            if libc.mincore(ctypes.addressof(start), 1, pages) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            return bool(pages[0] & 1)
        finally:
            del start


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no preadv2 RWF_NOWAIT here")
def test_a_file_is_in_memory_once_read_and_not_once_dropped(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(64 * 1024))
    if parallel.mount_type(str(path.resolve()), Path("/proc/mounts").read_text()) == "tmpfs":
        pytest.skip("tmpfs keeps every page in memory")

    def dropped() -> bool:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return not _first_page_resident(path)

    def asked() -> bool:
        with LocalFile(str(path)) as source:
            source.advise_random()
            return source.in_memory()

    # Only a page the kernel let go tests the probe: some file systems keep it (an overlay
    # whose upper layer is in memory, a host's shared folder), and there the answer "no
    # waiting needed" is right.
    answers: list[bool] = []
    for _ in range(60):
        if dropped():
            answers.append(asked())
            if not answers[-1] or len(answers) == 20:
                break
    if not answers:
        pytest.skip(
            "this file system keeps a file's pages in memory after POSIX_FADV_DONTNEED "
            "(mincore said so 60 times in 60): no page on the disk to ask of"
        )
    # The read that may not wait starts reading the page it misses; on a disk quick enough
    # (a virtual disk the host caches) it is there before the call returns, and the answer
    # is rightly "no waiting needed". Measured here: 9 answers in 200. Asked up to 20 times,
    # a probe that always says True fails.
    assert not all(answers), f"{len(answers)} pages dropped, each said to be in memory"
    with LocalFile(str(path)) as source:
        source.read(0, 4096)
        assert source.in_memory()
        assert _first_page_resident(path)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_files_opened_ahead_and_not_read_are_closed(cache):
    with open_cache(cache) as reader:
        plans = plan_levels(reader, [LEVEL])
        bundles = list(list_plans(reader, plans, ScanPolicy.rebuild()).bundles())
        before = _open_fds()
        ahead = reader.read_ahead(bundles)
        first = next(ahead)
        assert len(_open_fds() - before) == len(bundles)  # nine: fewer than READ_AHEAD
        reader.read_bundle(first)
        ahead.close()  # a scan that stops early
        assert _open_fds() == before


def test_a_reader_that_reads_one_bundle_at_a_time_gets_no_threads(cache, monkeypatch):
    with open_cache(cache) as reader:
        monkeypatch.setattr(type(reader), "thread_safe", False)
        assert parallel.resolve_io_concurrency(8, reader) == 1
        with pytest.raises(UsageError):
            parallel.resolve_io_concurrency(0, reader)  # still a bad value
