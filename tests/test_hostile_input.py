"""Input that breaks nothing: the readers under arbitrary bytes and well-formed-but-wrong
records (hypothesis), and a corpus of real-world broken files (tests/data/bad) run end to end
through `bulkgroups run` against the sandbox.

Each corpus file NAME has a sidecar NAME.expect.json: `exit`, and either `rows` (one
[row, line, status, reason substring] per row, all of them) or `refused` (a substring of the
message on stderr when the file is refused as a whole). Files are templates: {G0} {G1} are
DocSpace groups, {M0}... members of G0 only, {X0}... users in no group, {U0} a group that does
not exist, {AG0} {AG1} {AM0}... the same for Adaxes, all from make_state(seed=7); {PAD:N} is N
bytes of "x", so a several-MB line costs the repository nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkgroups.identity import id_problem
from bulkgroups.model import InvalidRow, Op, Row, TargetKind
from bulkgroups.rows.dedupe import dedupe
from bulkgroups.rows.readers import Format, InputError, read_rows
from bulkgroups.sandbox import Sandbox, make_state
from tests.support import last_outcomes, results_lines, run_cli

BAD = Path(__file__).parent / "data" / "bad"
CORPUS = sorted(p.name for p in BAD.iterdir() if not p.name.endswith(".expect.json"))
A = "0f8fad5b-d9cb-469f-a165-70867728950e"
B = "1f8fad5b-d9cb-469f-a165-70867728950e"
DN = "CN=Lee\\, Ann,OU=Users,DC=example,DC=com"
FORMULA = "=cmd|' /C calc'!A0"
# What a spreadsheet takes for the start of a formula (OWASP's list).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
HYPOTHESIS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- the properties every reader output has ----------------------------------------------------


def check_stream(path: Path, content: bytes, **kwargs: Any) -> list[Row | InvalidRow]:
    """Read `path` and check what must hold for any input: InputError (naming the file) or
    only Row and InvalidRow, numbered 1, 2, 3..., lines rising within the file, every invalid
    row with a one-line reason. Passes the rows through dedupe too, which must not mind."""
    try:
        rows = read_rows(path, **kwargs)
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return []
    out: list[Row | InvalidRow] = []
    last_line = 0
    lines = content.count(b"\n") + 1
    for item in rows:
        assert type(item) in (Row, InvalidRow), item
        assert item.row == len(out) + 1
        assert last_line < item.line <= lines
        if isinstance(item, InvalidRow):
            assert item.reason.strip(), item
            assert "\n" not in item.reason and "\r" not in item.reason, item
        last_line = item.line
        out.append(item)
    assert [x.row for x in dedupe(out)] == [x.row for x in out]
    return out


TOKENS = [
    b",", b'"', b'""', b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf",
    b"{", b"}", b"[", b"]", b":", b" ", b"\t", b"\\", A.encode(), DN.encode(), b"remove",
    b"move_all", b'"op"', b'"group":', b"null", b"1e999", FORMULA.encode(),
    b"op,group,member,to_group\n", b'{"op":"remove","group":"' + A.encode() + b'","member":"',
]
NOISE = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=12)), max_size=50).map(
    b"".join
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for hypothesis' files (function-scoped tmp_path does not mix with @given)."""
    return tmp_path_factory.mktemp("hostile")


@HYPOTHESIS
@given(
    body=NOISE,
    header=st.booleans(),
    kind=st.sampled_from(list(TargetKind)),
    limit=st.sampled_from([16, 64, 65536]),
    default_op=st.sampled_from([None, Op.REMOVE]),
)
def test_csv_reader_survives_any_bytes(
    scratch: Path, body: bytes, header: bool, kind: TargetKind, limit: int, default_op: Op | None
) -> None:
    """Arbitrary bytes as CSV: InputError or rows and invalid rows, never another exception."""
    content = (b"op,group,member,to_group\n" if header else b"") + body
    path = scratch / "any.csv"
    path.write_bytes(content)
    check_stream(path, content, fmt="csv", kind=kind, default_op=default_op,
                 max_line_bytes=limit)


@HYPOTHESIS
@given(body=NOISE, kind=st.sampled_from(list(TargetKind)), limit=st.sampled_from([16, 65536]))
def test_jsonl_reader_survives_any_bytes(
    scratch: Path, body: bytes, kind: TargetKind, limit: int
) -> None:
    """Arbitrary bytes as JSONL: rows and invalid rows only (JSONL has no file-level error)."""
    path = scratch / "any.jsonl"
    path.write_bytes(body)
    check_stream(path, body, fmt="jsonl", kind=kind, max_line_bytes=limit)


# Values a record may hold: right and wrong ids, ops in any case, formulas, text of any kind.
_TEXT = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=20
)
VALUES = st.one_of(
    st.sampled_from(
        [A, B, A.upper(), f"{{{A}}}", DN, "S-1-5-21-1-2", "", " ", "remove", "Remove", "add",
         "move", "move_all", "MOVE_ALL", "delete", FORMULA, "+1", "-1", "@x", "../../admin",
         "a?b#c", '"', '""', ",", "\x00", " \t ", "\x1f"]
    ),
    _TEXT,
)


# Records that are right, or one value away from right, so valid rows are common too.
NEAR = st.tuples(
    st.sampled_from(["remove", "add", "move", "move_all", "Remove", "", "nope"]),
    st.sampled_from([A, A.upper(), DN, "S-1-5-21-1-2", ""]),
    st.sampled_from([B, B.upper(), DN, "S-1-5-21-1-3", "", FORMULA]),
    st.sampled_from(["", "", A, B, DN, " "]),
).map(list)


@HYPOTHESIS
@given(
    records=st.lists(st.one_of(st.lists(VALUES, min_size=4, max_size=4), NEAR), max_size=25),
    crlf=st.booleans(),
    bom=st.booleans(),
    kind=st.sampled_from(list(TargetKind)),
)
def test_csv_records_map_one_to_one(
    scratch: Path, records: list[list[str]], crlf: bool, bom: bool, kind: TargetKind
) -> None:
    """Well-formed CSV of wrong (and right) values: each non-blank record is exactly one row
    at its own line; a valid row holds the record's values; an invalid one says why."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["op", "group", "member", "to_group"])
    writer.writerows(records)
    content = (b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode()
    path = scratch / "records.csv"
    path.write_bytes(content)
    out = check_stream(path, content, fmt="csv", kind=kind)
    by_line = {item.line: item for item in out}
    assert len(by_line) == len(out)
    for i, record in enumerate(records):
        line = i + 2
        item = by_line.pop(line, None)
        if item is None:
            assert not "".join(record).strip(), f"record at line {line} vanished: {record}"
            continue
        _check_record(item, [v.strip() for v in record], kind)
    assert by_line == {}


def _check_record(
    item: Row | InvalidRow, values: list[str], kind: TargetKind, *, raw: bool = True
) -> None:
    """`values` are the record's stripped values; `raw`: a NUL in them is a NUL byte in the
    file (CSV), not an escape (JSON), and spoils the whole record."""
    if raw and any("\x00" in v for v in values):
        assert isinstance(item, InvalidRow) and item.reason == "contains a NUL byte"
        return
    op, group, member, to_group = values
    if isinstance(item, Row):
        assert item.op.value == op.lower()
        assert (item.group, item.member, item.to_group) == (group, member, to_group)
        assert all(id_problem(kind, v) is None for v in (group, member, to_group) if v)
    else:
        assert (item.group, item.member, item.to_group) == (group, member, to_group)


JSON_VALUES = st.one_of(
    VALUES,
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.sampled_from([A, 1, None]), max_size=3),
    st.dictionaries(st.sampled_from(["id", "op"]), st.sampled_from([A, 2]), max_size=2),
)
KEYS = ("op", "group", "member", "to_group")


@HYPOTHESIS
@given(
    objects=st.lists(
        st.one_of(
            st.dictionaries(st.sampled_from([*KEYS, "note"]), JSON_VALUES, max_size=5),
            NEAR.map(lambda values: dict(zip(KEYS, values, strict=True))),
            JSON_VALUES,  # not an object at all
        ),
        max_size=25,
    ),
    crlf=st.booleans(),
    kind=st.sampled_from(list(TargetKind)),
)
def test_jsonl_records_map_one_to_one(
    scratch: Path, objects: list[Any], crlf: bool, kind: TargetKind
) -> None:
    """Well-formed JSON lines of any shape: one row per line at that line; non-objects and
    non-string values are invalid with the reason; a valid row holds the object's values."""
    end = b"\r\n" if crlf else b"\n"
    content = b"".join(orjson.dumps(o) + end for o in objects)
    path = scratch / "records.jsonl"
    path.write_bytes(content)
    out = check_stream(path, content, fmt="jsonl", kind=kind)
    assert [(x.row, x.line) for x in out] == [(i, i) for i in range(1, len(objects) + 1)]
    for obj, item in zip(objects, out, strict=True):
        if not isinstance(obj, dict):
            assert isinstance(item, InvalidRow) and item.reason == "not a JSON object"
            continue
        typed = [k for k in KEYS if obj.get(k) is not None and not isinstance(obj[k], str)]
        if typed:
            assert isinstance(item, InvalidRow)
            assert item.reason == "; ".join(f"{k}: must be a string" for k in typed)
            continue
        values = [(obj.get(k) or "").strip() for k in KEYS]
        _check_record(item, values, kind, raw=False)


# -- long lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_line_of_megabytes_is_one_invalid_row_in_little_memory(
    tmp_path: Path, fmt: Format
) -> None:
    """8 MB lines (one inside an open quote, one without a final line break) are invalid rows
    of their own; the reader's traced memory peaks under 1 MB while reading them."""
    big = b"x" * 8_000_000
    good = f"remove,{A},{B},\n".encode()
    if fmt == "csv":
        content = b"op,group,member,to_group\n" + good + f'remove,{A},{B},"\n'.encode()
        content += big + b'"\n' + good + b"remove," + big
    else:
        good = orjson.dumps({"op": "remove", "group": A, "member": B}) + b"\n"
        content = good + b'{"op":"remove","note":"' + big + b'"}\n' + good + big
    path = tmp_path / f"long.{fmt}"
    path.write_bytes(content)
    del big, content
    tracemalloc.start()
    try:
        rows = list(read_rows(path, fmt=fmt, kind=TargetKind.DOCSPACE))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    too_long = "line longer than 65536 bytes"
    got = [(r.row, r.line, r.reason if isinstance(r, InvalidRow) else "ok") for r in rows]
    if fmt == "csv":
        assert got == [(1, 2, "ok"), (2, 3, "unclosed quote"), (3, 4, too_long), (4, 5, "ok"),
                       (5, 6, too_long)]
    else:
        assert got == [(1, 1, "ok"), (2, 2, too_long), (3, 3, "ok"), (4, 4, too_long)]
    assert peak < 1_000_000, f"peak {peak:,} bytes"


# -- the corpus, end to end ---------------------------------------------------------------------


def corpus_state() -> dict[str, Any]:
    return make_state(seed=7, docspace_groups=2, docspace_members=30, adaxes_groups=2,
                      adaxes_members=12)


def placeholders(state: dict[str, Any]) -> dict[str, str]:
    """The ids the corpus templates name, picked from the state in a fixed order."""
    ds = state["docspace"]
    g0, g1 = list(ds["groups"])
    members = [set(ds["groups"][g]["members"]) for g in (g0, g1)]
    plain = {u for u, v in ds["users"].items() if v["kind"] == "user"}
    values = {"G0": g0, "G1": g1, "U0": "00000000-0000-4000-8000-0000000000ff"}
    values |= {f"M{i}": m for i, m in enumerate(sorted((members[0] - members[1]) & plain))}
    values |= {f"X{i}": x for i, x in enumerate(sorted(plain - members[0] - members[1]))}
    objects = state["adaxes"]["objects"]
    ag0, ag1 = [dn for dn, o in objects.items() if o["type"] == "group"]
    values |= {"AG0": ag0, "AG1": ag1}
    only_first = set(objects[ag0]["members"]) - set(objects[ag1]["members"])
    values |= {f"AM{i}": m for i, m in enumerate(sorted(only_first))}
    return values


_PLACEHOLDER = re.compile(rb"\{(PAD:\d+|[A-Z]+\d+)\}")


def fill(template: bytes, values: dict[str, str]) -> bytes:
    def one(m: re.Match[bytes]) -> bytes:
        name = m[1].decode()
        if name.startswith("PAD:"):
            return b"x" * int(name[4:])
        return values[name].encode()

    return _PLACEHOLDER.sub(one, template)


def corpus_job(folder: Path, sb: Sandbox, name: str, content: bytes, kind: str) -> Path:
    """The corpus file filled in, and a job that runs it against the sandbox."""
    (folder / name).write_bytes(content)
    base = sb.base_url if kind == "docspace" else sb.adaxes_url
    job = folder / "job.toml"
    job.write_text(
        f'[job]\nname = "corpus"\n[target]\nkind = "{kind}"\nbase_url = "{base}"\n'
        f'token_env = "BG_TEST_TOKEN"\n[input]\npath = "{name}"\n'
        '[output]\nresults = "results.jsonl"\n'
        "[limits]\nrate = 1000\nconcurrency = 10\ntimeout_s = 5\nbatch_size = 1\n",
        encoding="utf-8",
    )
    return job


def memberships(sb: Sandbox, kind: str) -> dict[str, set[str]]:
    state = sb.dump()
    if kind == "docspace":
        return {g: set(v["members"]) for g, v in state["docspace"]["groups"].items()}
    objects = state["adaxes"]["objects"]
    return {dn: set(o["members"]) for dn, o in objects.items() if o["type"] == "group"}


def expectation(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((BAD / f"{name}.expect.json").read_text(encoding="utf-8"))
    return data


def test_corpus_is_complete() -> None:
    """At least 20 broken files, each with its expectation, every sidecar with its file."""
    sidecars = {p.name.removesuffix(".expect.json") for p in BAD.glob("*.expect.json")}
    assert sidecars == set(CORPUS)
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("name", CORPUS)
async def test_corpus_file_end_to_end(tmp_path: Path, name: str) -> None:
    """`bulkgroups run` on the file: good rows done, bad rows invalid with line and reason,
    refused files refused before any request, the exit status as the sidecar says."""
    expect = expectation(name)
    kind = expect.get("kind", "docspace")
    state = corpus_state()
    content = fill((BAD / name).read_bytes(), placeholders(state))
    async with Sandbox(state) as sb:
        before = memberships(sb, kind)
        job = corpus_job(tmp_path, sb, name, content, kind)
        token = "sk-test-key" if kind == "docspace" else "adm-test-token"
        done = await run_cli("run", str(job), "--quiet", token=token)
        after = memberships(sb, kind)
        log = list(sb.log)
    assert done.code == expect["exit"], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    results = tmp_path / "results.jsonl"
    if "refused" in expect:
        assert expect["refused"] in done.stderr
        assert log == [] and after == before
        assert not results.exists() or results_lines(results) == []
        return
    outcomes = last_outcomes(results)
    got = {row: (o["line"], o["status"]) for row, o in outcomes.items()}
    assert got == {row: (line, status) for row, line, status, *_ in expect["rows"]}
    for row, _, status, *why in expect["rows"]:
        if why:
            assert why[0] in (outcomes[row]["error"] or ""), (row, outcomes[row]["error"])
        if status in ("ok", "noop"):
            assert outcomes[row]["error"] is None or status == "noop"
    _check_changes(outcomes, before, after)
    writes = [e for e in log if e.method != "GET"]
    ops = [o["op"] for o in outcomes.values() if o["status"] == "ok"]
    assert len(writes) == sum(2 if op == "move" else 1 for op in ops)


def _check_changes(
    outcomes: dict[int, dict[str, Any]], before: dict[str, set[str]], after: dict[str, set[str]]
) -> None:
    """Every ok row's change is in the state, and nothing else changed."""
    expected = {g: set(m) for g, m in before.items()}
    for o in outcomes.values():
        if o["status"] != "ok":
            continue
        group, member, to_group = o["group"], o["member"], o["to_group"]
        group = next(g for g in expected if g.lower() == group.lower())
        if o["op"] in ("remove", "move"):
            assert member in before[group]
            expected[group].discard(member)
        if o["op"] == "add":
            expected[group].add(member)
        if o["op"] == "move":
            expected[next(g for g in expected if g.lower() == to_group.lower())].add(member)
    assert after == expected


@pytest.mark.parametrize("name", [n for n in CORPUS if "refused" not in expectation(n)])
def test_corpus_file_through_the_reader(name: str, tmp_path: Path) -> None:
    """The same files straight through the reader: the row and line numbers of the sidecar,
    invalid rows with its reasons, and the stream properties."""
    expect = expectation(name)
    kind = TargetKind(expect.get("kind", "docspace"))
    content = fill((BAD / name).read_bytes(), placeholders(corpus_state()))
    path = tmp_path / name
    path.write_bytes(content)
    fmt: Format = "csv" if name.endswith(".csv") else "jsonl"
    rows = check_stream(path, content, fmt=fmt, kind=kind)
    assert [(r.row, r.line) for r in rows] == [(row, line) for row, line, *_ in expect["rows"]]
    for item, (_, _, status, *why) in zip(rows, expect["rows"], strict=True):
        assert isinstance(item, InvalidRow) == (status == "invalid"), item
        if isinstance(item, InvalidRow):
            assert why[0] in item.reason


# -- formulas never go back out into a CSV ------------------------------------------------------


def csv_cells(path: Path) -> Iterator[str]:
    with open(path, newline="", encoding="utf-8") as f:
        for record in csv.reader(f):
            yield from record


async def test_formula_values_never_reach_a_csv_bulkgroups_writes(tmp_path: Path) -> None:
    """After a run of formulas.csv, `report --failed-csv` and `undo -o x.csv` write only ids
    that passed validation: no cell starts like a spreadsheet formula."""
    state = corpus_state()
    content = fill((BAD / "formulas.csv").read_bytes(), placeholders(state))
    async with Sandbox(state) as sb:
        job = corpus_job(tmp_path, sb, "formulas.csv", content, "docspace")
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 1, done.stderr
    results = tmp_path / "results.jsonl"
    assert any(FORMULA in (o["op"] + o["group"] + o["member"] + o["to_group"])
               for o in results_lines(results))  # the values are in the results, as data
    failed, undo = tmp_path / "failed.csv", tmp_path / "undo.csv"
    done = await run_cli("report", str(results), "--failed-csv", str(failed))
    assert done.code == 0, done.stderr
    done = await run_cli("undo", str(results), "-o", str(undo))
    assert done.code == 0, done.stderr
    for path in (failed, undo):
        cells = list(csv_cells(path))
        assert len(cells) > 4  # a header and at least one row
        assert not [c for c in cells if c.startswith(FORMULA_PREFIXES)], path


def _results_line(row: int, **fields: Any) -> bytes:
    base = {"row": row, "line": row + 1, "key": "0" * 16, "op": "remove", "group": A,
            "member": B, "to_group": "", "status": "failed", "http_status": 500,
            "attempts": 1, "error": "x", "elapsed_ms": 1.0,
            "finished_at": "2026-01-01T00:00:00.000Z"}
    return orjson.dumps({**base, **fields}) + b"\n"


async def test_csv_writers_neutralise_formulas_from_any_results_line(tmp_path: Path) -> None:
    """A results file not written by this run (edited, or a move_all whose server listed odd
    member ids) must not turn into a CSV whose cells a spreadsheet runs as formulas."""
    results = tmp_path / "results.jsonl"
    results.write_bytes(
        _results_line(1, group=FORMULA)
        + _results_line(2, op="move_all", member="", to_group=B, status="ok",
                        moved=[f"=HYPERLINK(\"http://evil.example/\",\"{A}\")"], left=[])
    )
    failed, undo = tmp_path / "failed.csv", tmp_path / "undo.csv"
    report = await run_cli("report", str(results), "--failed-csv", str(failed))
    assert report.code == 0
    undone = await run_cli("undo", str(results), "-o", str(undo))
    assert undone.code == 0
    for path in (failed, undo):
        assert not [c for c in csv_cells(path) if c.startswith(FORMULA_PREFIXES)], path
    # The writers return what they held back and the CLI says so, once, on stderr.
    assert report.stderr.count("warning: 1 row held back from") == 1, report.stderr
    assert "wrote 0 failed rows" in report.stdout
    assert undone.stderr.count("warning: 1 row held back from") == 1, undone.stderr


def test_writers_return_what_they_held_back_and_print_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Domain code returns what it found: write_rows counts the rows it held back and
    leaves the telling to the CLI."""
    from bulkgroups.results.undo import InputRow, write_rows

    rows = iter([InputRow("remove", A, B, ""), InputRow("remove", FORMULA, B, "")])
    assert write_rows(tmp_path / "out.csv", rows, fmt="csv", force=False) == (1, 1)
    assert capsys.readouterr() == ("", "")


# -- input text is never taken for terminal markup ----------------------------------------------


async def test_report_survives_markup_in_input_values(tmp_path: Path) -> None:
    """An op of '[/x]' in the input ends in an error message; `report` prints it as text."""
    results = tmp_path / "results.jsonl"
    results.write_bytes(_results_line(1, op="[/x]", status="invalid",
                                      error="unknown op '[/x]'"))
    done = await run_cli("report", str(results))
    assert done.code == 0, done.stderr
    assert "unknown op '[/x]'" in done.stdout


async def test_dry_run_survives_markup_in_a_group_dn(tmp_path: Path) -> None:
    """A valid Adaxes DN with '[/x]' in it is printed by `run --dry-run` as it is."""
    group = "CN=[/x] Team,OU=Groups,DC=example,DC=com"
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(
        {"op": "remove", "group": group, "member": DN}) + b"\n")
    job = tmp_path / "job.toml"
    job.write_text('[job]\nname = "m"\n[target]\nkind = "adaxes"\nsandbox = true\n'
                   '[input]\npath = "in.jsonl"\n', encoding="utf-8")
    done = await run_cli("run", str(job), "--dry-run")
    assert done.code == 0, done.stderr
    assert group in done.stdout
