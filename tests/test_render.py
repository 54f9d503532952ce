"""The tables for people (:class:`cachestatus.render.TextTable`): read back, they give the
figures of the JSON document whole, whatever the width of the terminal."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from click.testing import CliRunner

from cachestatus.cli import main
from cachestatus.render import TextTable, print_table

#: A terminal's styles (bold, italic, plain).
STYLE = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def cells(line: str) -> list[str]:
    """The cells of a drawn row (its bars ``┃``, ``│`` or ``|`` taken away)."""
    return [cell.strip() for cell in re.split("[┃│|]", line)[1:-1]]


def body(lines: list[str]) -> list[list[str]]:
    """The header and rows of a framed table, without its rules."""
    return [cells(line) for line in lines if line[0] in "┃│|"]


def run(*args: object) -> tuple[int, str, str]:
    done = CliRunner().invoke(main, [str(a) for a in args])
    return done.exit_code, done.stdout, done.stderr


def test_rows_are_drawn_whole_aligned_right_with_the_totals_apart() -> None:
    table = TextTable(["Level", "Bytes"], title="a title wider than the table itself")
    table.add_row("0", "1")
    table.add_row("17", "1,234,567,890,123,456,789")
    table.add_section()
    table.add_row("all", "1,234,567,890,123,456,790", bold=True)
    lines = table.lines()
    assert lines[0] == "a title wider than the table itself"
    frame = lines[1:]
    assert len({len(line) for line in frame}) == 1  # one width: the widest cell's
    assert body(frame) == [
        ["Level", "Bytes"],
        ["0", "1"],
        ["17", "1,234,567,890,123,456,789"],
        ["all", "1,234,567,890,123,456,790"],
    ]
    assert frame[3].startswith("│     0 │") and frame[3].endswith(" 1 │")
    # Rules: the top, under the header, before the totals, the bottom.
    assert [line[0] for line in frame] == ["┏", "┃", "┡", "│", "│", "├", "│", "└"]
    assert "\x1b" not in str(table)


def test_a_terminal_sees_the_header_and_totals_bold_and_a_pipe_plain_text() -> None:
    table = TextTable(["Level", "Tiles"], title="REBUILD")
    table.add_row("3", "12")
    table.add_section()
    table.add_row("all", "12", bold=True)
    terminal, pipe = Terminal(), io.StringIO()
    print_table(table, terminal)
    print_table(table, pipe)
    assert pipe.getvalue() == str(table) + "\n"
    shown = terminal.getvalue().splitlines()
    assert [STYLE.sub("", line) for line in shown] == str(table).splitlines()
    assert shown[0] == "\x1b[3mREBUILD\x1b[0m"
    assert "\x1b[1mLevel\x1b[0m" in shown[2] and "\x1b[1m  all\x1b[0m" in shown[-2]
    assert "\x1b" not in shown[4]  # a level's row


def test_a_stream_without_box_drawing_characters_gets_ascii() -> None:
    table = TextTable(["Level", "Tiles"], title="REBUILD · compact-v2")
    table.add_row("3", "12")
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="cp1252")
    print_table(table, stream)
    stream.flush()
    lines = raw.getvalue().decode("cp1252").splitlines()
    assert lines[0] == "REBUILD · compact-v2"  # cp1252 has the dot
    assert lines[1] == lines[3] == "+=======+=======+" and lines[-1] == "+-------+-------+"
    assert body(lines[1:]) == [["Level", "Tiles"], ["3", "12"]]
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    print_table(table, stream)
    stream.flush()
    assert raw.getvalue().decode("ascii").splitlines()[0] == "REBUILD ? compact-v2"


def test_the_rebuild_table_gives_the_json_figures(sample: Path) -> None:
    code, out, err = run("rebuild", sample, "--workers", "1")
    assert code == 0, err
    code, doc_text, err = run("summary", sample, "--json")
    assert code == 0, err
    doc = json.loads(doc_text)
    lines = out.splitlines()
    assert lines[0].startswith(f"REBUILD_CACHE_STATUS · compact-v2 · {sample} · job ")
    header, *rows, totals = body(lines[1:])
    assert header[0] == "Level" and header[-2:] == ["% complete", "Tile bytes"]
    assert len(rows) == len(doc["levels"])
    for row, level in zip(rows, doc["levels"], strict=True):
        assert int(row[0]) == level["level"]
        assert int(row[3].replace(",", "")) == level["bundles"]
        assert int(row[4].replace(",", "")) == level["tiles_expected"]
        assert int(row[5].replace(",", "")) == level["tiles_present"]
        assert int(row[-1].replace(",", "")) == level["tile_bytes"]
    assert totals[0] == "all"
    assert int(totals[5].replace(",", "")) == doc["totals"]["tiles_present"]
    assert float(totals[-2]) == round(doc["totals"]["percent_complete"], 2)


def test_info_table_gives_the_json_levels(sample: Path) -> None:
    code, out, err = run("info", sample)
    assert code == 0, err
    doc = json.loads(run("info", sample, "--json")[1])
    lines = out.splitlines()
    assert lines[0] == doc["cache"]
    start = next(i for i, line in enumerate(lines) if line.startswith(" Level ┃"))
    assert set(lines[start + 1]) == {"━", "╇"}
    rows = [[cell.strip() for cell in line.split("│")] for line in lines[start + 2 :]]
    assert [(int(r[0]), int(r[3].replace(",", "")), int(r[4])) for r in rows] == [
        (lv["level"], lv["tiles_expected"], lv["bundle_files"]) for lv in doc["levels"]
    ]


def test_verify_table_gives_the_json_figures(sample: Path) -> None:
    code, out, err = run("verify", sample, "--workers", "1")
    assert code == 0, err
    doc = json.loads(run("verify", sample, "--workers", "1", "--json")[1])
    lines = out.splitlines()
    assert lines[0] == f"VERIFY · compact-v2 · {sample}"
    header, *rows, totals = body(lines[1:])
    assert header == ["Level", "Scale", "Bundles", "Tiles checked", "Bad tiles"]
    checked = [lv for lv in doc["levels"] if lv["bundles"]]
    assert [(int(r[0]), int(r[3].replace(",", "")), int(r[4])) for r in rows] == [
        (lv["level"], lv["tiles_checked"], lv["tiles_bad"]) for lv in checked
    ]
    assert totals[0] == "all" and int(totals[3]) == doc["totals"]["tiles_checked"]
