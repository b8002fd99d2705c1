"""Readers: CSV and JSONL rows, every invalid reason, line numbers, memory and speed."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bulkgroups.model import InvalidRow, Op, Row, TargetKind
from bulkgroups.rows.csvreader import MAX_RECORD_LINES
from bulkgroups.rows.readers import Format, InputError, detect_format, read_rows

DATA = Path(__file__).parent / "data"
DOCSPACE = TargetKind.DOCSPACE
ADAXES = TargetKind.ADAXES
A = "0f8fad5b-d9cb-469f-a165-70867728950e"
B = "1f8fad5b-d9cb-469f-a165-70867728950e"
C = "2f8fad5b-d9cb-469f-a165-70867728950e"
HEADER = b"op,group,member,to_group\n"
DN = "CN=Sales,OU=Groups,DC=example,DC=com"


def rows_of(
    tmp_path: Path,
    content: bytes,
    *,
    fmt: Format = "csv",
    kind: TargetKind = DOCSPACE,
    default_op: Op | None = None,
    max_line_bytes: int = 65536,
) -> list[Row | InvalidRow]:
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(content)
    return list(
        read_rows(path, fmt=fmt, kind=kind, default_op=default_op, max_line_bytes=max_line_bytes)
    )


def csv_rows(tmp_path: Path, body: str | bytes, **kwargs: object) -> list[Row | InvalidRow]:
    raw = body.encode() if isinstance(body, str) else body
    return rows_of(tmp_path, HEADER + raw, **kwargs)  # type: ignore[arg-type]


def jsonl(*objs: object) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def where(rows: list[Row | InvalidRow]) -> list[tuple[int, int, str]]:
    """(row, line, kind of outcome) for each row: 'ok' for a Row, else its reason."""
    return [(r.row, r.line, "ok" if isinstance(r, Row) else r.reason) for r in rows]


def reason(rows: list[Row | InvalidRow]) -> str:
    assert len(rows) == 1
    bad = rows[0]
    assert isinstance(bad, InvalidRow), bad
    return bad.reason


# --- valid forms -----------------------------------------------------------------------


def test_docspace_csv_every_op() -> None:
    """The DocSpace fixture reads as one valid row per op, with rows and lines numbered."""
    rows = list(read_rows(DATA / "docspace-ops.csv", fmt="csv", kind=DOCSPACE))
    assert rows == [
        Row(1, 2, Op.REMOVE, A, B),
        Row(2, 3, Op.ADD, A, B),
        Row(3, 4, Op.MOVE, A, B, C),
        Row(4, 5, Op.MOVE_ALL, A, "", C),
    ]


def test_adaxes_jsonl_every_op() -> None:
    """The Adaxes fixture (DNs with escapes, GUIDs, SIDs) reads as one valid row per op."""
    rows = list(read_rows(DATA / "adaxes-ops.jsonl", fmt="jsonl", kind=ADAXES))
    assert [(r.row, r.line, r.op) for r in rows if isinstance(r, Row)] == [
        (1, 1, Op.REMOVE),
        (2, 2, Op.ADD),
        (3, 3, Op.MOVE),
        (4, 4, Op.MOVE_ALL),
    ]
    assert rows[0].member == r"CN=Lee\, Ann,OU=Users,DC=example,DC=com"


def test_docspace_jsonl_every_op(tmp_path: Path) -> None:
    """JSONL rows for DocSpace: absent and null fields read as empty."""
    content = jsonl(
        {"op": "remove", "group": A, "member": B},
        {"op": "add", "group": A, "member": B, "to_group": None},
        {"op": "move", "group": A, "member": B, "to_group": C},
        {"op": "move_all", "group": A, "member": None, "to_group": C},
    )
    assert rows_of(tmp_path, content, fmt="jsonl") == [
        Row(1, 1, Op.REMOVE, A, B),
        Row(2, 2, Op.ADD, A, B),
        Row(3, 3, Op.MOVE, A, B, C),
        Row(4, 4, Op.MOVE_ALL, A, "", C),
    ]


def test_adaxes_csv_every_op_quoted(tmp_path: Path) -> None:
    """Adaxes ids in a fully quoted CSV (as PowerShell's Export-Csv writes it)."""
    sid = "S-1-5-21-1004336348-1177238915-682003330-1102"
    guid = "{6B1E3C2A-8F4D-4E5B-9A7C-1D2E3F4A5B6C}"
    body = (
        f'"remove","{DN}","CN=Lee\\, Ann,OU=Users,DC=example,DC=com",""\r\n'
        f'"add","{guid}","{sid}",""\r\n'
        f'"move","{DN}","{sid}","CN=Vertrieb Süd,OU=Gruppen,DC=example,DC=com"\r\n'
        f'"move_all","{sid}","","{guid}"\r\n'
    )
    rows = rows_of(tmp_path, b'"op","group","member","to_group"\r\n' + body.encode(), kind=ADAXES)
    assert rows == [
        Row(1, 2, Op.REMOVE, DN, "CN=Lee\\, Ann,OU=Users,DC=example,DC=com"),
        Row(2, 3, Op.ADD, guid, sid),
        Row(3, 4, Op.MOVE, DN, sid, "CN=Vertrieb Süd,OU=Gruppen,DC=example,DC=com"),
        Row(4, 5, Op.MOVE_ALL, sid, "", guid),
    ]


def test_values_and_header_names_are_stripped(tmp_path: Path) -> None:
    """Whitespace around values and header names goes; header case does not matter."""
    content = f" OP ,\tGroup, MEMBER ,note\n  Remove , {A} ,\t{B}\t, hi \n".encode()
    assert rows_of(tmp_path, content) == [Row(1, 2, Op.REMOVE, A, B)]


def test_extra_columns_and_column_order(tmp_path: Path) -> None:
    """Columns may come in any order; unknown columns are ignored."""
    content = f"ticket,member,group,op,comment\nT-1,{B},{A},remove,done\n".encode()
    assert rows_of(tmp_path, content) == [Row(1, 2, Op.REMOVE, A, B)]


def test_default_op(tmp_path: Path) -> None:
    """Without an op column, or with an empty op, the job's default op applies."""
    content = f"group,member\n{A},{B}\n".encode()
    assert rows_of(tmp_path, content, default_op=Op.REMOVE) == [Row(1, 2, Op.REMOVE, A, B)]
    rows = csv_rows(tmp_path, f",{A},{B},\nadd,{A},{B},\n", default_op=Op.REMOVE)
    assert rows == [Row(1, 2, Op.REMOVE, A, B), Row(2, 3, Op.ADD, A, B)]
    content = jsonl({"group": A, "member": B}, {"op": "", "group": A, "member": B})
    rows = rows_of(tmp_path, content, fmt="jsonl", default_op=Op.REMOVE)
    assert rows == [Row(1, 1, Op.REMOVE, A, B), Row(2, 2, Op.REMOVE, A, B)]


def test_fewer_fields_than_header(tmp_path: Path) -> None:
    """Missing trailing fields read as empty; per-op checks say what is missing."""
    rows = csv_rows(tmp_path, f"remove,{A},{B}\nmove,{A},{B}\n")
    assert where(rows) == [(1, 2, "ok"), (2, 3, "missing to_group for move")]


def test_more_fields_than_header(tmp_path: Path) -> None:
    """Extra fields are ignored when empty and make the record invalid otherwise."""
    rows = csv_rows(tmp_path, f"remove,{A},{B},,,, \nremove,{A},{B},,x\n")
    assert where(rows) == [(1, 2, "ok"), (2, 3, "5 fields, header has 4")]
    bad = rows[1]
    assert isinstance(bad, InvalidRow)
    assert (bad.op, bad.group, bad.member) == ("remove", A, B)


# --- invalid reasons -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (("delete", A, B, ""), "unknown op 'delete'"),
        (("", A, B, ""), "missing op"),
        (("remove", "", B, ""), "missing group for remove"),
        (("remove", A, "", ""), "missing member for remove"),
        (("add", A, "", ""), "missing member for add"),
        (("move", A, "", C), "missing member for move"),
        (("move", A, B, ""), "missing to_group for move"),
        (("move_all", A, "", ""), "missing to_group for move_all"),
        (("move_all", A, B, C), "member must be empty for move_all"),
        (("remove", A, B, C), "to_group is only for move and move_all, not remove"),
        (("move", A, B, A), "to_group is the same as group"),
        (("move_all", A, "", A.upper()), "to_group is the same as group"),
        (("remove", "nope", B, ""), "group: not a UUID"),
        (("remove", A, "nope", ""), "member: not a UUID"),
        (("move", A, B, "nope"), "to_group: not a UUID"),
        (("remove", f"{{{A}}}", B, ""), "group: not a UUID"),
        (
            ("move", "", "", ""),
            "missing group for move; missing member for move; missing to_group for move",
        ),
    ],
)
def test_invalid_reasons_docspace(tmp_path: Path, fields: tuple[str, ...], expected: str) -> None:
    """Each per-op rule and id check gives its own reason, naming the field."""
    rows = csv_rows(tmp_path, ",".join(fields) + "\n")
    assert reason(rows) == expected
    bad = rows[0]
    assert isinstance(bad, InvalidRow)
    assert (bad.row, bad.line) == (1, 2)
    assert (bad.group, bad.member, bad.to_group) == fields[1:]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"op": "remove", "group": "Sales", "member": DN}, "group: not a DN, GUID or SID"),
        ({"op": "remove", "group": DN, "member": "Ann Lee"}, "member: not a DN, GUID or SID"),
        (
            {"op": "move", "group": DN, "member": "S-1-5-21-1-2", "to_group": DN.lower()},
            "to_group is the same as group",
        ),
        (
            {
                "op": "move",
                "group": DN,
                "member": "S-1-5-21-1-2",
                "to_group": "CN=Sales, OU=Groups, DC=example, DC=com",
            },
            "to_group is the same as group",
        ),
        ({"op": "remove", "group": "CN=a=b,DC=x", "member": DN}, "group: not a DN, GUID or SID"),
    ],
)
def test_invalid_reasons_adaxes(tmp_path: Path, obj: dict[str, str], expected: str) -> None:
    """Adaxes ids are checked as DN, GUID or SID; group and to_group compare by norm_id."""
    assert reason(rows_of(tmp_path, jsonl(obj), fmt="jsonl", kind=ADAXES)) == expected


def test_invalid_row_keeps_effective_op(tmp_path: Path) -> None:
    """An invalid row records the op it would have had, the default one included."""
    rows = csv_rows(tmp_path, f",{A},,\nREMOVE,{A},,\n", default_op=Op.ADD)
    assert [(r.op, r.reason) for r in rows if isinstance(r, InvalidRow)] == [
        ("add", "missing member for add"),
        ("remove", "missing member for remove"),
    ]


def test_op_is_case_insensitive(tmp_path: Path) -> None:
    """'Remove' and 'MOVE_ALL' are the ops remove and move_all."""
    rows = csv_rows(tmp_path, f"Remove,{A},{B},\nMOVE_ALL,{A},,{C}\n")
    assert [r.op for r in rows] == [Op.REMOVE, Op.MOVE_ALL]


# --- CSV encodings, line endings, quoting ----------------------------------------------


def test_bom_is_skipped(tmp_path: Path) -> None:
    """A UTF-8 byte order mark before the header is not part of the first column name."""
    rows = rows_of(tmp_path, b"\xef\xbb\xbf" + HEADER + f"remove,{A},{B},\n".encode())
    assert rows == [Row(1, 2, Op.REMOVE, A, B)]
    rows = rows_of(
        tmp_path, b"\xef\xbb\xbf" + jsonl({"op": "add", "group": A, "member": B}), fmt="jsonl"
    )
    assert rows == [Row(1, 1, Op.ADD, A, B)]


def test_crlf_and_mixed_line_endings(tmp_path: Path) -> None:
    """CRLF, LF and a mix of both read the same, with the same line numbers."""
    lf = HEADER + f"remove,{A},{B},\nadd,{A},{B},\nremove,{A},{C},\n".encode()
    crlf = lf.replace(b"\n", b"\r\n")
    mixed = crlf.replace(b"\r\n", b"\n", 2)
    expected = [Row(1, 2, Op.REMOVE, A, B), Row(2, 3, Op.ADD, A, B), Row(3, 4, Op.REMOVE, A, C)]
    for content in (lf, crlf, mixed):
        assert rows_of(tmp_path, content) == expected


def test_last_line_without_line_break(tmp_path: Path) -> None:
    """The last record needs no line break after it."""
    assert csv_rows(tmp_path, f"remove,{A},{B},") == [Row(1, 2, Op.REMOVE, A, B)]


def test_blank_lines_get_no_number(tmp_path: Path) -> None:
    """Blank and separator-only lines are not records: row numbers skip them, lines do not."""
    rows = csv_rows(tmp_path, f'\n\nremove,{A},{B},\n   \n,,,\n\r\n"",,,\nadd,{A},{B},\n\n')
    assert where(rows) == [(1, 4, "ok"), (2, 9, "ok")]
    content = b"\n" + HEADER + b"\n"
    assert rows_of(tmp_path, content + f"remove,{A},{B},\n".encode()) == [
        Row(1, 4, Op.REMOVE, A, B)
    ]


def test_quoted_comma_and_newline_keep_line_numbers(tmp_path: Path) -> None:
    """Quoted commas and line breaks (in an ignored column) keep the next lines' numbers right."""
    content = (
        "op,group,member,to_group,note\r\n"
        f'remove,{A},{B},,"one, two"\r\n'
        f'remove,"{A}","{B}",,"first line\r\nsecond, line\nthird"\r\n'
        f'add,{A},{B},,"say ""hi"""\n'
        f"remove,{A},{C},,\n"
    ).encode()
    assert where(rows_of(tmp_path, content)) == [
        (1, 2, "ok"),
        (2, 3, "ok"),
        (3, 6, "ok"),
        (4, 7, "ok"),
    ]


def test_line_break_inside_an_id_column_is_not_swallowing(tmp_path: Path) -> None:
    """A quote opened in an id column and closed lines later marks only its first line
    invalid; the lines in between are read again as records of their own."""
    body = f'remove,"{A},{B},\nremove,{A},{C},\nadd,{A},{B}",\nremove,{A},{B},\n'
    rows = csv_rows(tmp_path, body)
    assert where(rows) == [
        (1, 2, "line break inside a quoted value (unclosed quote?)"),
        (2, 3, "ok"),
        (3, 4, "member: not a UUID"),
        (4, 5, "ok"),
    ]


def test_unclosed_quote_at_end_of_file(tmp_path: Path) -> None:
    """A quote that never closes spoils its own line only; the lines after it still count."""
    body = f'remove,"{A},{B},\n' + "".join(f"remove,{A},{B},\n" for _ in range(3))
    assert where(csv_rows(tmp_path, body)) == [
        (1, 2, "unclosed quote"),
        (2, 3, "ok"),
        (3, 4, "ok"),
        (4, 5, "ok"),
    ]


def test_unclosed_quote_is_capped(tmp_path: Path) -> None:
    """A multi-line record longer than the cap is given up on, and every line after the
    broken one is read again."""
    n = MAX_RECORD_LINES + 50
    body = f'remove,{A},{B},"\n' + "".join(f"remove,{A},{B},\n" for _ in range(n))
    rows = csv_rows(tmp_path, body)
    assert where(rows)[0] == (1, 2, f"unclosed quote (record runs past {MAX_RECORD_LINES} lines)")
    assert where(rows)[1:] == [(i, i + 1, "ok") for i in range(2, n + 2)]


def test_multi_line_note_longer_than_the_byte_cap(tmp_path: Path) -> None:
    """A quoted value may span lines, but not more bytes than max_line_bytes in all."""
    lines = [f'remove,{A},{B},,"' + "x" * 50, "y" * 150, "z" * 150 + '"', f"add,{A},{B},"]
    content = b"op,group,member,to_group,note\n" + "\n".join(lines).encode()
    rows = rows_of(tmp_path, content, max_line_bytes=300)
    got = where(rows)
    assert got[0] == (1, 2, "unclosed quote (record runs past 300 bytes)")
    assert [line for _, line, _ in got] == [2, 3, 4, 5]  # each line after it read again
    assert got[1][2] == "unknown op 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...'"
    assert got[3] == (4, 5, "ok")
    # The same record within the cap is one valid row.
    rows = rows_of(tmp_path, content, max_line_bytes=500)
    assert where(rows) == [(1, 2, "ok"), (2, 5, "ok")]


def test_bad_quoting(tmp_path: Path) -> None:
    """Text after a closing quote is malformed CSV: that record is invalid, the rest reads."""
    rows = csv_rows(tmp_path, f'remove,"{A}"x,{B},\nremove,{A},{B},\n')
    assert where(rows)[1] == (2, 3, "ok")
    assert where(rows)[0][:2] == (1, 2)
    assert where(rows)[0][2].startswith("bad quoting: ")


def test_invalid_utf8_line_in_the_middle(tmp_path: Path) -> None:
    """A line that is not UTF-8 is one invalid record; the rest of the file is still read."""
    body = f"remove,{A},{B},\n".encode() + b"remove,\xff\xfe,x,\n" + f"add,{A},{B},\n".encode()
    assert where(csv_rows(tmp_path, body)) == [
        (1, 2, "ok"),
        (2, 3, "not valid UTF-8"),
        (3, 4, "ok"),
    ]


def test_invalid_utf8_inside_an_open_quote(tmp_path: Path) -> None:
    """A bad line reached inside an open quote ends that record and is reported itself."""
    body = f'remove,{A},{B},"\n'.encode() + b"\xff\n" + f"add,{A},{B},\n".encode()
    assert where(csv_rows(tmp_path, body)) == [
        (1, 2, "unclosed quote"),
        (2, 3, "not valid UTF-8"),
        (3, 4, "ok"),
    ]


def test_latin1_file_is_invalid_line_by_line(tmp_path: Path) -> None:
    """A Latin-1 file fails only on the lines with non-ASCII bytes."""
    body = f"remove,{A},{B},\nremove,{A},{B},ä\n".encode("latin-1")
    assert where(csv_rows(tmp_path, body)) == [(1, 2, "ok"), (2, 3, "not valid UTF-8")]


def test_nul_byte(tmp_path: Path) -> None:
    """A record with a NUL byte is invalid; the rest of the file is still read."""
    body = f"remove,{A},{B}\x00,\nremove,{A},{B},\n".encode()
    assert where(csv_rows(tmp_path, body)) == [(1, 2, "contains a NUL byte"), (2, 3, "ok")]


def test_long_line(tmp_path: Path) -> None:
    """A line longer than max_line_bytes is one invalid record, skipped without reading it
    whole; a line of exactly max_line_bytes (plus CRLF) is fine."""
    exact = f"remove,{A},{B},".encode()
    limit = len(exact)
    body = (
        exact
        + b"\r\n"
        + b"remove,"
        + b"x" * 10_000
        + b"\n"
        + exact
        + b"x\n"
        + exact
        + b"\n"
        + b"y" * 10_000
    )
    rows = csv_rows(tmp_path, body, max_line_bytes=limit)
    too_long = f"line longer than {limit} bytes"
    assert where(rows) == [
        (1, 2, "ok"),
        (2, 3, too_long),
        (3, 4, too_long),
        (4, 5, "ok"),
        (5, 6, too_long),
    ]


def test_lone_carriage_return_inside_a_quoted_line(tmp_path: Path) -> None:
    """A bare CR inside an unquoted field of a quoted line is malformed, not a crash."""
    rows = csv_rows(tmp_path, f'remove,"{A}",{B}\rx,\nremove,{A},{B},\n')
    assert where(rows)[1] == (2, 3, "ok")
    assert isinstance(rows[0], InvalidRow)


# --- CSV header problems ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no header row (the file is empty)"),
        (b"\n\n  \n", "no header row (the file is empty)"),
        (f"remove,{A},{B}\n".encode(), "line 1: the header has no 'group' column"),
        (b"op,member\n", "line 1: the header has no 'group' column"),
        (b"group,member\n", "line 1: the header has no 'op' column"),
        (b"op,group,Group\n", "line 1: column 'group' appears twice"),
        (b"\nop,gr\xffoup\n", "line 2: cannot read the header: not valid UTF-8"),
    ],
)
def test_header_problems_raise(tmp_path: Path, content: bytes, message: str) -> None:
    """A CSV without a usable header raises InputError naming the file (and line) at once."""
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_rows(path, fmt="csv", kind=DOCSPACE)
    assert str(info.value).startswith(f"{path}: {message}")


def test_missing_file_raises(tmp_path: Path) -> None:
    """A file that cannot be opened raises InputError naming it."""
    with pytest.raises(InputError, match="cannot open"):
        read_rows(tmp_path / "gone.csv", fmt="csv", kind=DOCSPACE)
    with pytest.raises(InputError, match=r"gone\.jsonl"):
        read_rows(tmp_path / "gone.jsonl", fmt="jsonl", kind=DOCSPACE)


# --- JSONL -----------------------------------------------------------------------------


def test_jsonl_invalid_lines(tmp_path: Path) -> None:
    """Not JSON, not an object, non-string values and bad UTF-8 are invalid; reading goes on."""
    good = orjson.dumps({"op": "remove", "group": A, "member": B})
    content = b"\n".join(
        [
            good,
            b"",
            b"   ",
            b"not json",
            b"[1, 2]",
            b'"remove"',
            b"null",
            b'{"op": "remove", "group": 5, "member": true}',
            b'{"op": ["remove"], "group": "' + A.encode() + b'", "member": "' + B.encode() + b'"}',
            b'{"op": "remove", "group": "\xff"}',
            b'{"op": "remove", "group": "a\x00"}',
            good,
            b'{"op": "remove", "gro',
        ]
    )
    rows = rows_of(tmp_path, content, fmt="jsonl")
    got = where(rows)
    assert got[0] == (1, 1, "ok")
    assert got[1][:2] == (2, 4)
    assert got[1][2].startswith("not valid JSON: ")
    assert got[2:9] == [
        (3, 5, "not a JSON object"),
        (4, 6, "not a JSON object"),
        (5, 7, "not a JSON object"),
        (6, 8, "group: must be a string; member: must be a string"),
        (7, 9, "op: must be a string"),
        (8, 10, "not valid UTF-8"),
        (9, 11, "contains a NUL byte"),
    ]
    assert got[9] == (10, 12, "ok")
    assert got[10][:2] == (11, 13)
    assert got[10][2].startswith("not valid JSON: ")
    assert got[10][2].endswith("(last line has no line break: truncated?)")
    typed = rows[6]
    assert isinstance(typed, InvalidRow)
    assert (typed.op, typed.group, typed.member) == ("", A, B)


def test_jsonl_keys_loose_match(tmp_path: Path) -> None:
    """Keys differing only in case or spaces are the columns; other keys are ignored."""
    content = jsonl({"Op": "remove", " GROUP ": A, "Member": B, "ticket": 7})
    assert rows_of(tmp_path, content, fmt="jsonl") == [Row(1, 1, Op.REMOVE, A, B)]
    exact_wins = jsonl({"group": A, "Group": C, "op": "remove", "member": B})
    assert rows_of(tmp_path, exact_wins, fmt="jsonl") == [Row(1, 1, Op.REMOVE, A, B)]


def test_jsonl_values_stripped_and_crlf(tmp_path: Path) -> None:
    """JSONL values are stripped; CRLF line ends and blank lines are fine."""
    content = jsonl({"op": " add ", "group": f" {A}", "member": f"{B}\t"}).replace(b"\n", b"\r\n")
    assert rows_of(tmp_path, b"\r\n" + content + b"\r\n", fmt="jsonl") == [Row(1, 2, Op.ADD, A, B)]


def test_jsonl_long_line(tmp_path: Path) -> None:
    """A JSONL line longer than max_line_bytes is invalid and skipped."""
    good = orjson.dumps({"op": "remove", "group": A, "member": B}) + b"\n"
    long = orjson.dumps({"op": "remove", "group": A, "member": "x" * 5000}) + b"\n"
    rows = rows_of(tmp_path, good + long + good, fmt="jsonl", max_line_bytes=len(good))
    assert where(rows) == [
        (1, 1, "ok"),
        (2, 2, f"line longer than {len(good)} bytes"),
        (3, 3, "ok"),
    ]


# --- format detection, laziness, memory ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.CSV", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", None),
        ("a.txt", None),
        ("csv", None),
    ],
)
def test_detect_format(name: str, fmt: str | None) -> None:
    """The format follows the extension, case-insensitively; others are unknown."""
    assert detect_format(Path(name)) == fmt


def test_rows_are_streamed_and_file_closed(tmp_path: Path) -> None:
    """read_rows returns an iterator; the file is closed once it is exhausted."""
    path = tmp_path / "in.csv"
    path.write_bytes(HEADER + f"remove,{A},{B},\n".encode() * 3)
    rows = read_rows(path, fmt="csv", kind=DOCSPACE)
    assert isinstance(rows, Iterator)
    assert next(rows) == Row(1, 2, Op.REMOVE, A, B)
    assert len(list(rows)) == 2


def _write_big(path: Path, n: int, *, fmt: Format) -> None:
    with path.open("wb") as f:
        if fmt == "csv":
            f.write(HEADER)
        chunk: list[bytes] = []
        for i in range(n):
            member = f"{i:08x}-d9cb-469f-a165-70867728950e"
            if fmt == "csv":
                chunk.append(f"remove,{A},{member},\n".encode())
            else:
                chunk.append(
                    b'{"op":"remove","group":"%s","member":"%s"}\n' % (A.encode(), member.encode())
                )
            if len(chunk) == 10_000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


_CHILD = """
import sys, time
from pathlib import Path
from bulkgroups.model import TargetKind
from tests.peak import peak_rss_kib
from bulkgroups.rows.readers import read_rows

before = peak_rss_kib()
start = time.perf_counter()
n = 0
for _ in read_rows(Path(sys.argv[1]), fmt=sys.argv[2], kind=TargetKind.DOCSPACE):
    n += 1
elapsed = time.perf_counter() - start
grown_kib = peak_rss_kib() - before
print(n, grown_kib, elapsed)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_big_file_streams_in_bounded_memory(tmp_path: Path, fmt: Format) -> None:
    """200k rows stream in a fresh interpreter whose peak memory hardly grows, in seconds."""
    n = 200_000
    path = tmp_path / f"big.{fmt}"
    _write_big(path, n, fmt=fmt)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), fmt],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=60,
    ).stdout.split()
    count, grown_kib, elapsed = int(out[0]), int(out[1]), float(out[2])
    assert count == n
    # Keeping the rows would take 40 MB and more (a Row and two fresh strings each).
    assert grown_kib < 20 * 1024, f"peak memory grew by {grown_kib} KiB"
    assert elapsed < 5, f"{elapsed:.1f} s for {n} rows"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_reader_keeps_nothing_per_row(tmp_path: Path, fmt: Format) -> None:
    """Traced allocation peak while streaming 20k rows stays far below what keeping them takes."""
    n = 20_000
    path = tmp_path / f"mid.{fmt}"
    _write_big(path, n, fmt=fmt)
    tracemalloc.start()
    try:
        count = 0
        last: Row | InvalidRow | None = None
        for row in read_rows(path, fmt=fmt, kind=DOCSPACE):
            count += 1
            last = row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    assert last == Row(
        n, n + (fmt == "csv"), Op.REMOVE, A, f"{n - 1:08x}-d9cb-469f-a165-70867728950e"
    )
    # 20k kept rows would be about 4 MB; the reader holds one line and a few caches.
    assert peak < 1_000_000, f"peak {peak} bytes"
