"""Identifier checks: UUIDs for DocSpace; DNs, GUIDs and SIDs for Adaxes; the compare form."""

from __future__ import annotations

import time
import unicodedata

import pytest

from bulkgroups.identity import (
    IdKind,
    id_check,
    id_problem,
    ident,
    is_adaxes_id,
    is_uuid,
    norm_id,
)
from bulkgroups.model import InvalidRow, Op, Row, SkippedRow, TargetKind
from bulkgroups.rows.dedupe import dedupe
from bulkgroups.rows.guard import guard
from bulkgroups.targets.adaxes import Members as AdaxesMembers
from bulkgroups.targets.docspace import DsMembers

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize("value", [UUID, UUID.upper(), "00000000-0000-0000-0000-000000000000"])
def test_uuid_accepts_canonical_forms(value: str) -> None:
    """A canonical 8-4-4-4-12 UUID passes in either case."""
    assert is_uuid(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"{{{UUID}}}",
        UUID.replace("-", ""),
        UUID[:-1],
        UUID + "0",
        UUID + "\n",
        " " + UUID,
        UUID.replace("0", "g", 1),
        "０f8fad5b-d9cb-469f-a165-70867728950e",  # a full-width digit is not hex
    ],
)
def test_uuid_rejects_other_forms(value: str) -> None:
    """Braces, missing dashes, wrong lengths, whitespace and non-hex are not UUIDs."""
    assert not is_uuid(value)


@pytest.mark.parametrize(
    "value",
    [
        "CN=Sales,OU=Groups,DC=example,DC=com",
        "cn=sales,ou=groups,dc=example,dc=com",
        r"CN=Lee\, Ann,OU=Users,DC=example,DC=com",
        r"CN=Lee\2C Ann,OU=Users,DC=example,DC=com",
        r"CN=a\+b\"c\\d\#e\<f\>g\;h\=i,DC=x",
        r"CN=\#hash,DC=x",
        "CN=#04024869,DC=x",
        "CN=Ann Lee+UID=alee,OU=Users,DC=x",
        "CN=Ann Lee, OU=Users, DC=example, DC=com",
        "CN=Jöhn Smïth,OU=Ünits,DC=例え,DC=com",
        "CN=Müller (Vertrieb),OU=Gruppen,DC=x",
        "1.2.840.113556.1.4.1=x,DC=y",
        "msDS-Attr=v",
        "OU=Only",
        f"{{{UUID}}}",
        UUID,
        UUID.upper(),
        "S-1-5-21-1004336348-1177238915-682003330-512",
        "S-1-5-32-544",
        "S-1-1-0",
        "S-1-0x000000000005-21-1",
    ],
)
def test_adaxes_accepts_dn_guid_sid(value: str) -> None:
    """DNs (escapes, hex escapes, '+', '#', spaces, non-ASCII), GUIDs and SIDs pass."""
    assert is_adaxes_id(value)
    assert id_problem(TargetKind.ADAXES, value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Ann Lee",
        "CN=Lee, Ann,OU=Users",  # an unescaped comma splits into an RDN "Ann" without "="
        "CN=a=b,DC=x",  # a bare "=" in a value: usually a missing comma
        "CN=,DC=x",
        "CN= ,DC=x",
        "CN=a,",
        ",CN=a",
        "=a",
        "CN=a;DC=x",
        "CN=a<b,DC=x",
        'CN=a"b,DC=x',
        "CN=#hash,DC=x",
        "CN=a\\",
        "CN=a\\zz,DC=x",
        "CN=a\nb,DC=x",
        "CN=a\x00,DC=x",
        "-CN=a",
        f"{{{UUID}",
        f"{{{UUID}}}}}",
        "S-1-5",
        "S-2-5-21",
        "S-1-5-",
        "S-1-x-21",
        "S-1-5-21-" + "-".join(["1"] * 15),  # 16 sub-authorities
    ],
)
def test_adaxes_rejects(value: str) -> None:
    """Malformed DNs, GUIDs and SIDs and plain names are refused with a short reason."""
    assert not is_adaxes_id(value)
    expected = "empty" if not value else "not a DN, GUID or SID"
    assert id_problem(TargetKind.ADAXES, value) == expected


def test_dn_check_is_linear_on_long_failing_input() -> None:
    """A long value that fails at its end is refused quickly (no regex backtracking blow-up)."""
    values = ["CN=" + "a" * 50_000 + ";", "CN=" + "a\\," * 20_000 + "\\", "CN=" + " " * 50_000]
    start = time.perf_counter()
    for value in values:
        assert not is_adaxes_id(value)
    assert time.perf_counter() - start < 0.5


def test_id_problem_for_docspace() -> None:
    """DocSpace takes UUIDs only; anything else is 'not a UUID'."""
    assert id_problem(TargetKind.DOCSPACE, UUID) is None
    assert id_problem(TargetKind.DOCSPACE, "CN=a,DC=x") == "not a UUID"
    assert id_problem(TargetKind.DOCSPACE, f"{{{UUID}}}") == "not a UUID"
    assert id_problem(TargetKind.DOCSPACE, "") == "empty"


def test_id_check_agrees_with_id_problem() -> None:
    """The fast per-row check says yes exactly when id_problem finds nothing."""
    samples = [UUID, "CN=a,DC=x", "S-1-5-32-544", "nope", f"{{{UUID}}}"]
    for kind in TargetKind:
        check = id_check(kind)
        for value in samples:
            assert bool(check(value)) == (id_problem(kind, value) is None)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (UUID, f"  {UUID.upper()} "),
        (UUID, f"{{{UUID.upper()}}}"),
        ("S-1-5-32-544", "s-1-5-32-544"),
        ("CN=Admins,OU=IT,DC=x", "cn=admins,ou=it,dc=x"),
        ("CN=Admins, OU=IT , DC=x", "CN=Admins,OU=IT,DC=x"),
        (r"CN=Lee\, Ann,DC=x", r"cn=lee\2c ann,dc=x"),
        (r"CN=Lee\2C Ann,DC=x", r"CN=Lee\2c Ann,DC=x"),
        (r"CN=J\C3\B6rg,DC=x", "CN=Jörg,DC=x"),
        ("CN=Ann+UID=a,DC=x", "UID=a+CN=Ann,DC=x"),
        ("CN=b+CN=A,DC=x", "cn=B+cn=a,DC=x"),
        ("CN=ÄRGER,DC=x", "cn=ärger,dc=x"),
    ],
)
def test_norm_id_equal_spellings(a: str, b: str) -> None:
    """Different spellings of the same id compare equal after norm_id."""
    assert norm_id(a) == norm_id(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("CN=Ann,OU=IT,DC=x", "CN=Ann,OU=HR,DC=x"),
        (r"CN=Lee\, Ann,DC=x", "CN=Lee,CN=Ann,DC=x"),
        ("CN=Ann Lee,DC=x", "CN=AnnLee,DC=x"),
        (UUID, UUID.replace("e", "f")),
    ],
)
def test_norm_id_keeps_different_ids_apart(a: str, b: str) -> None:
    """norm_id never merges ids that differ in content."""
    assert norm_id(a) != norm_id(b)


def test_norm_id_of_anything_else_is_casefolded() -> None:
    """A string that is no known id is only stripped and case-folded."""
    assert norm_id("  Straße ") == "strasse"
    assert norm_id("CN=a=b") == "cn=a=b"


# -- one identity, shared by dedupe, the guard and both adapters -----------------------------

CAFE_NFC = unicodedata.normalize("NFC", "CN=Café,OU=IT,DC=x")
CAFE_NFD = unicodedata.normalize("NFD", "cn=café, ou=it,dc=x")
GUID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
SPELLINGS = [
    (CAFE_NFC, CAFE_NFD),
    (r"CN=Caf\C3\A9,OU=IT,DC=x", CAFE_NFD),
    (r"CN=Lee\, Ann,DC=x", r"cn=lee\2C ann , dc=x"),
    (GUID, "{" + GUID.upper() + "}"),
    (GUID, GUID.replace("-", "").upper()),
    ("S-1-5-21-1-2-3-1100", "s-1-5-21-1-2-3-1100"),
]


def test_nfc_and_nfd_spellings_are_one_id() -> None:
    assert CAFE_NFC != CAFE_NFD
    assert norm_id(CAFE_NFC) == norm_id(CAFE_NFD)
    assert ident(CAFE_NFC) == ident(CAFE_NFD)


@pytest.mark.parametrize(("a", "b"), SPELLINGS)
def test_a_protected_id_spelled_the_other_way_is_protected(a: str, b: str) -> None:
    """The guard, given `a` as protected (as the job stores it), refuses a row naming `b`."""
    row = Row(1, 2, Op.REMOVE, "CN=G,DC=x", b)
    [out] = list(guard([row], frozenset({norm_id(a)})))
    assert isinstance(out, InvalidRow) and out.reason == "protected"


@pytest.mark.parametrize(("a", "b"), SPELLINGS)
def test_dedupe_takes_the_other_spelling_for_a_duplicate(a: str, b: str) -> None:
    rows = [Row(1, 2, Op.REMOVE, "CN=G,DC=x", a), Row(2, 3, Op.REMOVE, "cn=g, dc=x", b)]
    first, second = list(dedupe(rows))
    assert first == rows[0]
    assert isinstance(second, SkippedRow) and second.reason == "duplicate of row 1"


@pytest.mark.parametrize(("a", "b"), SPELLINGS)
def test_adapters_find_the_member_by_the_other_spelling(a: str, b: str) -> None:
    """Adaxes: a list entry carrying `a` (as DN, GUID or SID) holds a row's `b`; DocSpace
    compares its GUIDs the same way; both refuse a move_all carrying a protected member."""
    kind = ident(a).kind
    field = {IdKind.DN: "dn", IdKind.GUID: "guid", IdKind.SID: "sid"}[kind]
    listed = AdaxesMembers.parse([{field: a}])
    assert listed is not None and listed.has(b) is True
    assert listed.carries(frozenset({norm_id(b)}))
    if kind is IdKind.GUID:
        ds = DsMembers([a])
        assert ds.lists(b) and ds.has(b) is True
        assert ds.carries(frozenset({norm_id(b)}))
