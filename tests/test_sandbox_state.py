"""Sandbox state: the generator, loading and validation, dump round trips, DN helpers, demo file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bulkgroups.sandbox import Sandbox, StateError, make_state
from bulkgroups.sandbox.dn import (
    display_name,
    domain_name,
    escape_value,
    normalize_dn,
    split_dn,
)
from bulkgroups.sandbox.seed import make_demo_state

DEMO = Path(__file__).resolve().parent.parent / "jobs" / "demo-state.json"


def test_make_state_is_deterministic():
    """The same arguments give the same state; another seed gives another."""
    assert make_state() == make_state()
    assert make_state(seed=1) != make_state()


def test_make_state_shape():
    """Group sizes, credentials, guests and terminated users, and users in no group."""
    state = make_state(
        docspace_groups=2,
        docspace_members=10,
        adaxes_groups=2,
        adaxes_members=12,
        guests=2,
        terminated=1,
    )
    ds, ax = state["docspace"], state["adaxes"]
    assert ds["api_keys"] == {"sk-test-key": ["accounts:read", "accounts:write"]}
    assert ds["accounts"] == {"admin@example.com": "test-password"}
    assert ax["tokens"] == ["adm-test-token"]
    assert ax["accounts"] == {"EXAMPLE\\admin": "test-password"}
    assert [len(g["members"]) for g in ds["groups"].values()] == [10, 10]
    kinds = [ds["users"][u]["kind"] for u in next(iter(ds["groups"].values()))["members"]]
    assert kinds.count("guest") == 2
    assert kinds.count("terminated") == 1
    in_groups = {u for g in ds["groups"].values() for u in g["members"]}
    assert len(set(ds["users"]) - in_groups) >= 10
    groups = [o for o in ax["objects"].values() if o["type"] == "group"]
    assert [len(g["members"]) for g in groups] == [12, 12]
    users = [dn for dn, o in ax["objects"].items() if o["type"] == "user"]
    assert len(users) == 34
    assert len({o["guid"] for o in ax["objects"].values()}) == len(ax["objects"])


def test_state_validation():
    """Bad ids, kinds, types, unknown members and duplicate GUIDs are refused with StateError."""
    bad_states: list[object] = [
        {"docspace": {"users": {"x": {"name": "a"}}}},
        {"docspace": {"users": {"00000000-0000-4000-8000-000000000001": {"kind": "admin"}}}},
        {"docspace": {"groups": {"00000000-0000-4000-8000-000000000001": {"members": ["zz"]}}}},
        {"adaxes": {"objects": {"CN=a,DC=x": {"type": "computer", "guid": "g", "sid": "s"}}}},
        {
            "adaxes": {
                "objects": {
                    "CN=a,DC=x": {
                        "type": "group",
                        "guid": "g",
                        "sid": "s",
                        "members": ["CN=b,DC=x"],
                    }
                }
            }
        },
        {
            "adaxes": {
                "objects": {
                    "CN=a,DC=x": {"type": "user", "guid": "g", "sid": "s"},
                    "CN=b,DC=x": {"type": "user", "guid": "G", "sid": "t"},
                }
            }
        },
        {"ldap": {}},
        [1, 2],
    ]
    for bad in bad_states:
        with pytest.raises(StateError):
            Sandbox(bad)  # type: ignore[arg-type]


def test_members_canonicalised_on_dump():
    """Members named by GUID, SID or another case are dumped as canonical DNs."""
    state = {
        "adaxes": {
            "objects": {
                "CN=Ann,OU=Users,DC=example,DC=com": {"type": "user", "guid": "AAAA", "sid": "S-1"},
                "CN=Bob,OU=Users,DC=example,DC=com": {"type": "user", "guid": "bbbb", "sid": "S-2"},
                "CN=Cat,OU=Users,DC=example,DC=com": {"type": "user", "guid": "cccc", "sid": "S-3"},
                "CN=G,OU=Groups,DC=example,DC=com": {
                    "type": "group",
                    "guid": "gggg",
                    "sid": "S-9",
                    "members": ["aaaa", "S-2", "cn=cat,ou=users,dc=example,dc=com"],
                },
            }
        }
    }
    dumped = Sandbox(state).dump()
    group = dumped["adaxes"]["objects"]["CN=G,OU=Groups,DC=example,DC=com"]
    assert group["members"] == [
        "CN=Ann,OU=Users,DC=example,DC=com",
        "CN=Bob,OU=Users,DC=example,DC=com",
        "CN=Cat,OU=Users,DC=example,DC=com",
    ]
    assert group["approval"] is False
    assert group["denied"] is False
    assert dumped["docspace"] == {"api_keys": {}, "accounts": {}, "users": {}, "groups": {}}


def test_load_from_path_and_str(tmp_path: Path):
    """A state can be a JSON file given as Path or str; dump round-trips it."""
    state = make_state(docspace_members=5, adaxes_members=5)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    assert Sandbox(path).dump() == state
    assert Sandbox(str(path)).dump() == state
    path.write_text("{nope", encoding="utf-8")
    with pytest.raises(StateError):
        Sandbox(path)
    with pytest.raises(StateError):
        Sandbox(tmp_path / "missing.json")


def test_dn_helpers():
    """escape_value and split_dn handle commas, plus, leading #, hex escapes and UTF-8."""
    for value in (
        "Lee, Ann",
        "Smith+Jones",
        "#Hash",
        "Zoë Müller",
        "a=b",
        'say "hi"',
        "back\\slash",
    ):
        dn = f"CN={escape_value(value)},OU=Users,DC=example,DC=com"
        assert display_name(dn) == value
        assert domain_name(dn) == "example.com"
    assert split_dn("CN=A\\2Cb\\C3\\AB,DC=x") == [("CN", "A,bë"), ("DC", "x")]
    for bad in ("CN", "CN=a\\", ",CN=a"):
        with pytest.raises(ValueError, match="DN"):
            split_dn(bad)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("CN=Lee\\, Ann,OU=Users,DC=example", "cn=lee\\, ann , ou = users,  dc=EXAMPLE"),
        ("CN=Lee\\, Ann,OU=Users,DC=x", "CN=Lee\\2C Ann,OU=Users,DC=x"),
        ("CN=Lee\\, Ann,OU=Users,DC=x", "CN=Lee\\2c Ann,OU=Users,DC=x"),
        ("CN=Zoë Müller,DC=x", "CN=Zo\\C3\\AB M\\C3\\BCller,DC=x"),
        ("CN=Zoë,DC=x", "CN=ZOE\u0308,DC=x"),
        ("CN=Łukasz Żółć,DC=x", "cn=łukasz żółć,dc=x"),
        ("CN=Equals\\=Sign,DC=x", "CN=Equals\\3DSign,DC=x"),
        ("CN=Equals\\=Sign,DC=x", "CN=Equals=Sign,DC=x"),
        ("CN=\\#Hash Tag,DC=x", "CN=\\23Hash Tag,DC=x"),
        ("CN=Smith\\+Jones,DC=x", "CN=Smith\\2BJones,DC=x"),
        ("CN=a+UID=b,DC=x", "UID=b + CN=a,DC=x"),
        ("CN=Renée O'Brien,DC=x", "CN=Ren\\C3\\A9e O\\27Brien,DC=x"),
        ("CN=a\\ ,DC=x", "CN=a\\20,DC=x"),
    ],
)
def test_normalize_dn_spellings_of_one_object(a: str, b: str):
    """Case, spaces around RDNs and '=', escape styles (hex in UTF-8, either case), NFC and
    the order within a multi-valued RDN do not matter."""
    assert normalize_dn(a) == normalize_dn(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("CN=Lee\\, Ann,OU=Users,DC=x", "CN=Lee,CN=Ann,OU=Users,DC=x"),
        ("CN=Lee\\2C Ann,OU=Users,DC=x", "CN=Lee, CN=Ann,OU=Users,DC=x"),
        ("CN=Smith\\+Jones,DC=x", "CN=Smith+CN=Jones,DC=x"),
        ("CN=a\\ ,DC=x", "CN=a,DC=x"),
        ("CN=a\\,b,DC=x", "CN=a\\\\\\,b,DC=x"),
        ("CN=Ann,OU=Users,DC=x", "OU=Ann,OU=Users,DC=x"),
    ],
)
def test_normalize_dn_keeps_different_dns_apart(a: str, b: str):
    """An escaped separator is data: it never makes two DNs one; nor does an escaped
    backslash or a trailing escaped space vanish."""
    assert normalize_dn(a) != normalize_dn(b)


def test_normalize_dn_refuses_malformed_dns():
    """A trailing backslash, hex escapes that are not UTF-8, an RDN without '=' are errors."""
    for bad in ("CN=a\\", "CN=\\C3,DC=x", "CN=a,,DC=x", "CN", "=a,DC=x"):
        with pytest.raises(ValueError, match="DN"):
            normalize_dn(bad)
    assert display_name("CN=a\\ ,DC=x") == "a "


def test_state_resolves_any_dn_spelling():
    """Members named in another DN spelling resolve (and dump canonical); two objects
    whose DNs differ only in spelling are refused as not unique."""
    ann = "CN=Lee\\, Ann,OU=Users,DC=example,DC=com"
    state = {
        "adaxes": {
            "objects": {
                ann: {"type": "user", "guid": "aaaa", "sid": "S-1"},
                "CN=G,OU=Groups,DC=example,DC=com": {
                    "type": "group",
                    "guid": "gggg",
                    "sid": "S-9",
                    "members": ["cn=LEE\\2C ANN, ou=Users , dc=example,dc=com"],
                },
            }
        }
    }
    dumped = Sandbox(state).dump()
    assert dumped["adaxes"]["objects"]["CN=G,OU=Groups,DC=example,DC=com"]["members"] == [ann]
    twice = {
        "adaxes": {
            "objects": {
                ann: {"type": "user", "guid": "aaaa", "sid": "S-1"},
                "CN=Lee\\2C Ann, OU=Users,DC=example,DC=com": {
                    "type": "user",
                    "guid": "bbbb",
                    "sid": "S-2",
                },
            }
        }
    }
    with pytest.raises(StateError, match="not unique"):
        Sandbox(twice)


def test_demo_state_file():
    """jobs/demo-state.json is make_demo_state(), indented, with an approval and a denied group."""
    text = DEMO.read_text(encoding="utf-8")
    assert text.startswith('{\n  "docspace"')
    data = json.loads(text)
    assert data == make_demo_state()
    assert Sandbox(data).dump() == data
    groups = [o for o in data["adaxes"]["objects"].values() if o["type"] == "group"]
    assert [(g["approval"], g["denied"]) for g in groups] == [
        (False, False),
        (True, False),
        (False, True),
        (False, False),
    ]
    assert len(data["docspace"]["groups"]) == 4
    assert list(data["docspace"]["api_keys"]) == ["sk-demo-key"]
    assert data["adaxes"]["tokens"] == ["adm-demo-token"]
