"""Nothing is written in a cache, in any format: every command that reads one, its output kept
elsewhere, leaves every file and folder beside it as it was, byte for byte and mtime for mtime
(a file created and removed inside a folder changes the folder's mtime)."""

from __future__ import annotations

from click.testing import CliRunner

from cachestatus.cli import main
from tests.builders import BuiltCache
from tests.contract.suite import AREA
from tests.helpers import tree_snapshot


def test_no_command_writes_in_the_cache(cache: BuiltCache, tmp_path):
    home = cache.path.parent  # the folder the cache was built in, and only it
    elsewhere = tmp_path / "elsewhere"
    status = str(elsewhere / "s.gdb")
    area = ["--extent", ",".join(map(repr, AREA))]
    before = tree_snapshot(home)
    for args in (
        ["info"],
        ["rebuild", "--status", status, "--sizes", "--workers", "1"],
        ["summary", "--status", status],
        ["report", "--out", str(elsewhere / "r"), "--levels", "8,12", *area, "--workers", "1"],
        ["missing", "--out", str(elsewhere / "m.gpkg"), "--levels", "8", "--workers", "1"],
        ["verify", "--workers", "1"],  # reads every tile,
    ):
        result = CliRunner().invoke(main, [args[0], str(cache.path), *args[1:], *cache.cli])
        assert result.exit_code == 0, (args, result.output)
    assert tree_snapshot(home) == before
