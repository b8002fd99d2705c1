"""make_state: a deterministic sandbox state for tests, benchmarks and the demo."""

from __future__ import annotations

import random
import uuid
from typing import Any

from bulkgroups.sandbox.dn import escape_value

TEST_API_KEY = "sk-test-key"
TEST_ADAXES_TOKEN = "adm-test-token"
TEST_PASSWORD = "test-password"
DOCSPACE_ACCOUNT = "admin@example.com"
ADAXES_ACCOUNT = "EXAMPLE\\admin"
DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
SUFFIX = "DC=example,DC=com"
NESTED_GROUP_DN = f"CN=Nested Team,OU=Groups,{SUFFIX}"

_FIRST = (
    "Ann",
    "Ben",
    "Chloe",
    "Dan",
    "Eva",
    "Finn",
    "Grace",
    "Hugo",
    "Iris",
    "Jack",
    "Kara",
    "Liam",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
)
_LAST = (
    "Lee",
    "Smith",
    "Garcia",
    "Novak",
    "Kim",
    "Brown",
    "Rossi",
    "Silva",
    "Berg",
    "Khan",
    "Okafor",
    "Tanaka",
)
# Adaxes users whose DNs need escaping or URL-encoding: comma, plus, leading #, inner #,
# equals sign, quote, non-ASCII letters. They are all members of the first Adaxes group.
AWKWARD_NAMES = (
    "Lee, Ann",
    "Zoë Müller",
    "Smith+Jones",
    "#Hash Tag",
    "Team #5 Lead",
    "Equals=Sign",
    "Renée O'Brien",
    "Łukasz Żółć",
)
_DS_GROUPS = (
    "Sales",
    "Marketing",
    "Engineering",
    "Support",
    "Finance",
    "Legal",
    "Operations",
    "Research",
)
_AX_GROUPS = ("Sales", "R&D, Europe", "Support #1", "Zürich Office", "Marketing+PR")


def _name(i: int) -> str:
    first, rest = _FIRST[i % len(_FIRST)], i // len(_FIRST)
    last, round_ = _LAST[rest % len(_LAST)], rest // len(_LAST)
    return f"{first} {last}" + (f" {round_ + 1}" if round_ else "")


def _pick(names: tuple[str, ...] | list[str], i: int) -> str:
    return names[i] if i < len(names) else f"{names[i % len(names)]} {i // len(names) + 1}"


def make_state(
    *,
    docspace_groups: int = 3,
    docspace_members: int = 50,
    adaxes_groups: int = 3,
    adaxes_members: int = 50,
    guests: int = 2,
    terminated: int = 2,
    disabled: int = 2,
    nested: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """A valid state: `*_members` members per group, drawn from a pool twice that size plus
    10 users in no group; DocSpace guests and terminated users are members of the first group
    (terminated ones hidden from its member list). In Adaxes, `disabled` members of the first
    group (after the awkward names) are disabled accounts, and with `nested` a group of 5
    users (NESTED_GROUP_DN) is a member of the second group."""
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    users: dict[str, dict[str, str]] = {}
    pool = [new_id() for _ in range(docspace_members * 2 + 10)]
    for i, uid in enumerate(pool):
        users[uid] = {"name": _name(i), "kind": "user"}
    odd: list[str] = []
    for kind, n in (("guest", guests), ("terminated", terminated)):
        for i in range(n):
            uid = new_id()
            users[uid] = {"name": f"{kind.title()} {_name(i)}", "kind": kind}
            odd.append(uid)
    groups: dict[str, dict[str, Any]] = {}
    members_pool = pool[: docspace_members * 2]
    for g in range(docspace_groups):
        first = odd[:docspace_members] if g == 0 else []
        rest = rng.sample(members_pool, docspace_members - len(first))
        groups[new_id()] = {"name": _pick(_DS_GROUPS, g), "members": first + rest}

    objects: dict[str, dict[str, Any]] = {}
    ax_users: list[str] = []
    for i in range(adaxes_members * 2 + 10):
        name = AWKWARD_NAMES[i] if i < len(AWKWARD_NAMES) else _name(i)
        dn = f"CN={escape_value(name)},OU=Users,{SUFFIX}"
        objects[dn] = {"type": "user", "guid": new_id(), "sid": f"{DOMAIN_SID}-{1100 + i}"}
        ax_users.append(dn)
    candidates = ax_users[: adaxes_members * 2]
    for g in range(adaxes_groups):
        first = ax_users[: min(len(AWKWARD_NAMES), adaxes_members)] if g == 0 else []
        rest = rng.sample([u for u in candidates if u not in first], adaxes_members - len(first))
        dn = f"CN={escape_value(_pick(_AX_GROUPS, g))},OU=Groups,{SUFFIX}"
        objects[dn] = {
            "type": "group",
            "guid": new_id(),
            "sid": f"{DOMAIN_SID}-{5100 + g}",
            "members": first + rest,
            "approval": False,
            "denied": False,
        }
    first_group = next((o for o in objects.values() if o["type"] == "group"), None)
    if first_group is not None:
        skip = len(AWKWARD_NAMES)
        for dn in first_group["members"][skip : skip + disabled]:
            objects[dn]["disabled"] = True
    groups_dn = [dn for dn, o in objects.items() if o["type"] == "group"]
    if nested and len(groups_dn) >= 2:
        objects[NESTED_GROUP_DN] = {
            "type": "group",
            "guid": new_id(),
            "sid": f"{DOMAIN_SID}-{5000}",
            "members": ax_users[-5:],  # users in no other group: indirect members only
            "approval": False,
            "denied": False,
        }
        objects[groups_dn[1]]["members"].append(NESTED_GROUP_DN)
    return {
        "docspace": {
            "api_keys": {TEST_API_KEY: ["accounts:read", "accounts:write"]},
            "accounts": {DOCSPACE_ACCOUNT: TEST_PASSWORD},
            "users": users,
            "groups": groups,
        },
        "adaxes": {
            "tokens": [TEST_ADAXES_TOKEN],
            "accounts": {ADAXES_ACCOUNT: TEST_PASSWORD},
            "objects": objects,
        },
    }


DEMO_API_KEY = "sk-demo-key"
DEMO_ADAXES_TOKEN = "adm-demo-token"
DEMO_PASSWORD = "demo-password"


def make_demo_state() -> dict[str, Any]:
    """The state of jobs/demo-state.json: 4 DocSpace groups of 150 (with guests and terminated
    users in the first), 3 Adaxes groups of 80: the second needs approval, the third is denied."""
    state = make_state(
        docspace_groups=4,
        docspace_members=150,
        adaxes_groups=3,
        adaxes_members=80,
        guests=4,
        terminated=3,
        nested=True,
        seed=2026,
    )
    docspace, adaxes = state["docspace"], state["adaxes"]
    docspace["api_keys"] = {DEMO_API_KEY: ["accounts:read", "accounts:write"]}
    docspace["accounts"] = {DOCSPACE_ACCOUNT: DEMO_PASSWORD}
    adaxes["tokens"] = [DEMO_ADAXES_TOKEN]
    adaxes["accounts"] = {ADAXES_ACCOUNT: DEMO_PASSWORD}
    groups = [o for o in adaxes["objects"].values() if o["type"] == "group"]
    groups[1]["approval"] = True
    groups[2]["denied"] = True
    return state
