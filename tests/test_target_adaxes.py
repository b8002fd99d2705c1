"""The Adaxes adapter over real HTTP against the sandbox: operation results, membership
checks after a refusal, DN/GUID/SID forms, approval, precheck, lost answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from bulkgroups.http.auth import auth_for
from bulkgroups.identity import IdKind, guid_key, ident, normalize_dn
from bulkgroups.model import Op, Result, Row, Status, TargetKind
from bulkgroups.sandbox import Faults, Sandbox, SandboxConfig, make_state
from bulkgroups.sandbox.faults import FaultBox
from bulkgroups.secret import Secret
from bulkgroups.targets.adaxes import SIZE_LIMIT, AdaxesTarget, Members
from bulkgroups.targets.base import Target
from bulkgroups.targets.connect import make_target
from tests.support import fast_transport

SALES = "CN=Sales,OU=Groups,DC=example,DC=com"  # holds every awkward DN of make_state
RND = "CN=R&D\\, Europe,OU=Groups,DC=example,DC=com"
SUPPORT = "CN=Support #1,OU=Groups,DC=example,DC=com"
NOT_MEMBER = "The specified account name is not a member of the group."
DENIED = "Access is denied."
MEMBERS = "/restApi/api/directoryObjects/groupMembers"
Groups = dict[str, set[str]]
StartSandbox = Callable[..., Awaitable[Sandbox]]


# -- helpers ----------------------------------------------------------------------------------


def small_state(**flags: dict[str, bool]) -> dict[str, Any]:
    """Three groups of 10 (Sales holds the 8 awkward DNs), 30 users; `flags` sets approval
    or denied per group DN."""
    state = make_state(docspace_groups=1, docspace_members=2, adaxes_groups=3, adaxes_members=10)
    for dn, values in flags.items():
        state["adaxes"]["objects"][dn].update(values)
    return state


@pytest.fixture
async def box(start_sandbox: StartSandbox) -> Sandbox:
    """A sandbox serving small_state()."""
    return await start_sandbox(small_state())


def target(
    sb: Sandbox, session: aiohttp.ClientSession, *, precheck: bool, retries: int = 3
) -> Target:
    transport = fast_transport(sb, session, kind=TargetKind.ADAXES, retries=retries)
    return make_target(TargetKind.ADAXES, transport, precheck=precheck)


def groups(sb: Sandbox) -> Groups:
    objects = sb.dump()["adaxes"]["objects"]
    return {dn: set(o["members"]) for dn, o in objects.items() if o["type"] == "group"}


def users(sb: Sandbox) -> dict[str, dict[str, Any]]:
    objects = sb.dump()["adaxes"]["objects"]
    return {dn: o for dn, o in objects.items() if o["type"] == "user"}


def outsiders(sb: Sandbox, group: str) -> list[str]:
    inside = groups(sb)[group]
    return [dn for dn in users(sb) if dn not in inside]


def calls(sb: Sandbox) -> list[str]:
    """The log as "METHOD group" lines (POST bodies are not logged: "POST")."""
    out = []
    for e in sb.log:
        group = parse_qs(e.query).get("group", [""])[0]
        out.append(f"{e.method} {group}".strip())
    return out


def row(op: Op, group: str, member: str = "", to_group: str = "") -> Row:
    return Row(row=1, line=2, op=op, group=group, member=member, to_group=to_group)


def seed_losing_first_answer(later: int) -> int:
    """A fault seed whose first request is applied and its answer dropped, and whose next
    `later` requests are answered: found with the sandbox's own fault generator."""
    for seed in range(10_000):
        faults = Faults(seed=seed, drop_after_apply_ratio=0.5)
        draws = FaultBox()
        lost = [d.drop_after for d in (draws.draw(faults) for _ in range(later + 1)) if d]
        if lost[0] and not any(lost[1:]):
            return seed
    raise AssertionError("no such seed")


# -- identifiers (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("CN=Lee\\, Ann,OU=Users,DC=example", "cn=lee\\, ann , ou = users,dc=EXAMPLE"),
        ("CN=Lee\\, Ann,OU=Users,DC=x", "CN=Lee\\2C Ann,OU=Users,DC=x"),
        ("CN=Zoë Müller,DC=x", "CN=Zo\\C3\\AB M\\C3\\BCller,DC=x"),
        ("CN=ZOË,DC=x", "cn=zoë,dc=x"),
        ("CN=a+UID=b,DC=x", "UID=b + CN=a,DC=x"),
        ("CN=\\#Hash Tag,DC=x", "CN=\\23Hash Tag,DC=x"),
    ],
)
def test_dn_spellings_of_one_object_compare_equal(a: str, b: str) -> None:
    """Case, spaces around RDNs and '=', escape styles and RDN order do not matter."""
    assert normalize_dn(a) == normalize_dn(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("CN=Lee\\, Ann,OU=Users,DC=x", "CN=Lee,CN=Ann,OU=Users,DC=x"),
        ("CN=Smith\\+Jones,DC=x", "CN=Smith+CN=Jones,DC=x"),
        ("CN=a\\ ,DC=x", "CN=a,DC=x"),
        ("CN=Equals\\=Sign,DC=x", "CN=Equals,DC=x"),
    ],
)
def test_different_dns_stay_different(a: str, b: str) -> None:
    """An escaped separator is data: it never makes two DNs equal."""
    assert normalize_dn(a) != normalize_dn(b)


def test_guid_and_sid_forms() -> None:
    """GUIDs compare without braces or case; SIDs are told from GUIDs and DNs."""
    g = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    assert ident("{" + g + "}") == ident(g.lower())
    assert guid_key(g.replace("-", "")) == g.lower()
    assert ident("S-1-5-21-1-2-3-1100").kind is IdKind.SID
    assert ident("s-1-5-21-1-2-3-1100") == ident("S-1-5-21-1-2-3-1100")
    assert ident("CN=S-1-5,DC=x").kind is IdKind.DN


# -- remove -----------------------------------------------------------------------------------


async def test_remove_member(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A removal is one DELETE with the ids as query parameters; resultType 0 is ok."""
    m = sorted(groups(box)[RND])[0]
    before = groups(box)
    result = await target(box, client, precheck=False).apply(row(Op.REMOVE, RND, m))
    assert result == Result(Status.OK, http_status=200, attempts=1)
    [entry] = box.log
    assert (entry.method, entry.path) == ("DELETE", MEMBERS)
    assert parse_qs(entry.query) == {"group": [RND], "member": [m]}
    before[RND].discard(m)
    assert groups(box) == before


async def test_refused_removal_of_non_member_is_noop_after_the_read(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """resultType 1 for a non-member: the group is read, the member is absent: noop."""
    m = outsiders(box, RND)[0]
    before = groups(box)
    result = await target(box, client, precheck=False).apply(row(Op.REMOVE, RND, m))
    assert result == Result(Status.NOOP, http_status=200, attempts=1)
    assert calls(box) == [f"DELETE {RND}", f"GET {RND}"]
    assert groups(box) == before


async def test_refused_removal_of_a_present_member_fails(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """A denied group refuses a member that is there: failed with the server's words."""
    sb = await start_sandbox(small_state(**{RND: {"denied": True}}))
    before = groups(sb)
    present, absent = sorted(before[RND])[0], outsiders(sb, RND)[0]
    tg = target(sb, client, precheck=False)
    failed = await tg.apply(row(Op.REMOVE, RND, present))
    assert failed == Result(Status.FAILED, http_status=200, attempts=1, error=DENIED)
    assert calls(sb) == [f"DELETE {RND}", f"GET {RND}"]
    # The same refusal for someone not in the group: the membership, not the words, decides.
    noop = await tg.apply(row(Op.REMOVE, RND, absent))
    assert noop.status is Status.NOOP
    assert groups(sb) == before


async def test_no_changes_flag_is_noop_without_a_read(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """Versions that answer resultType 0 with extraInfo.noChanges give noop directly."""
    sb = await start_sandbox(small_state(), SandboxConfig(adaxes_no_changes_flag=True))
    before = groups(sb)
    result = await target(sb, client, precheck=False).apply(
        row(Op.REMOVE, RND, outsiders(sb, RND)[0])
    )
    assert result == Result(Status.NOOP, http_status=200, attempts=1)
    assert groups(sb) == before


async def test_unknown_member_fails_with_the_message(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """An HTTP 404 (unknown object) is failed with the body's message, sent once."""
    ghost = "CN=Nobody,OU=Users,DC=example,DC=com"
    result = await target(box, client, precheck=False).apply(row(Op.REMOVE, RND, ghost))
    assert result == Result(
        Status.FAILED, http_status=404, attempts=1, error=f"The member '{ghost}' was not found."
    )


async def test_approval_makes_the_row_pending(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """resultType 2 is pending: nothing changed, and it is not an error."""
    sb = await start_sandbox(small_state(**{RND: {"approval": True}}))
    before = groups(sb)
    result = await target(sb, client, precheck=False).apply(
        row(Op.REMOVE, RND, sorted(before[RND])[0])
    )
    assert result == Result(Status.PENDING, http_status=200, attempts=1)
    assert groups(sb) == before


# -- identifier forms -------------------------------------------------------------------------


async def test_awkward_dns_are_removed_then_noop(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Commas, '+', '#', '=', quotes and non-ASCII survive the query string both ways."""
    awkward = [dn for dn in sorted(groups(box)[SALES]) if any(c in dn for c in ",+#='ëüłż")]
    assert len(awkward) >= 8
    before = groups(box)
    tg = target(box, client, precheck=False)
    first = await asyncio.gather(*(tg.apply(row(Op.REMOVE, SALES, dn)) for dn in awkward))
    assert {r.status for r in first} == {Status.OK}
    before[SALES] -= set(awkward)
    assert groups(box) == before
    # Lower-cased: the sandbox resolves it, the adapter compares the list's spelling to it.
    again = await asyncio.gather(*(tg.apply(row(Op.REMOVE, SALES, dn.lower())) for dn in awkward))
    assert {r.status for r in again} == {Status.NOOP}
    assert groups(box) == before


async def test_member_by_guid(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A member named by GUID (braces, upper case) is removed, then found absent: noop."""
    m = sorted(groups(box)[RND])[0]
    guid = "{" + users(box)[m]["guid"].upper() + "}"
    before = groups(box)
    tg = target(box, client, precheck=False)
    assert (await tg.apply(row(Op.REMOVE, RND, guid))).status is Status.OK
    assert (await tg.apply(row(Op.REMOVE, RND, guid))).status is Status.NOOP
    before[RND].discard(m)
    assert groups(box) == before


async def test_member_by_sid_refusal_is_checked_by_sid(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """By SID, a refused removal reads the members with properties=objectSid and compares
    SIDs in any case: the SID is absent, so noop. Every read asks for the SIDs and for the
    whole list (sizeLimit far above the 1000 of older versions)."""
    m, other = sorted(groups(box)[RND])[:2]
    sid = users(box)[m]["sid"]
    before = groups(box)
    tg = target(box, client, precheck=False)
    assert (await tg.apply(row(Op.REMOVE, RND, sid))).status is Status.OK
    again = await tg.apply(row(Op.REMOVE, RND, sid.lower()))
    assert again == Result(Status.NOOP, http_status=200, attempts=1)
    assert calls(box) == [f"DELETE {RND}", f"DELETE {RND}", f"GET {RND}"]
    whole = {"group": [RND], "properties": ["objectSid"], "sizeLimit": [str(SIZE_LIMIT)]}
    assert parse_qs(box.log[2].query) == whole
    assert (await tg.apply(row(Op.REMOVE, RND, other))).status is Status.OK
    assert (await tg.apply(row(Op.REMOVE, RND, other))).status is Status.NOOP
    assert parse_qs(box.log[-1].query) == whole
    before[RND] -= {m, other}
    assert groups(box) == before


async def test_refused_removal_by_sid_of_a_present_member_fails(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """A denied group refuses a member named by SID who is there: the read finds the SID,
    so failed with the server's words; the same refusal for an absent SID is noop."""
    sb = await start_sandbox(small_state(**{RND: {"denied": True}}))
    before = groups(sb)
    present, absent = sorted(before[RND])[0], outsiders(sb, RND)[0]
    tg = target(sb, client, precheck=False)
    failed = await tg.apply(row(Op.REMOVE, RND, users(sb)[present]["sid"]))
    assert failed == Result(Status.FAILED, http_status=200, attempts=1, error=DENIED)
    noop = await tg.apply(row(Op.REMOVE, RND, users(sb)[absent]["sid"]))
    assert noop == Result(Status.NOOP, http_status=200, attempts=1)
    assert calls(sb) == [f"DELETE {RND}", f"GET {RND}"] * 2
    assert all("properties=objectSid" in e.query for e in sb.log if e.method == "GET")
    assert groups(sb) == before


async def test_precheck_by_sid_reads_the_sids(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """Precheck for SID rows reads the group once with its SIDs (any case) and answers the
    obvious noops from it without a change request."""
    before = groups(box)
    sid_of = {dn: u["sid"] for dn, u in users(box).items()}
    inside, absent = sorted(before[RND])[:3], outsiders(box, RND)[:3]
    tg = target(box, client, precheck=True)
    rows = [row(Op.REMOVE, RND, sid_of[m]) for m in absent]
    rows += [row(Op.ADD, RND, sid_of[m].lower()) for m in inside]
    results = await asyncio.gather(*(tg.apply(r) for r in rows))
    assert {r.status for r in results} == {Status.NOOP}
    assert calls(box) == [f"GET {RND}"]
    assert parse_qs(box.log[0].query) == {
        "group": [RND], "properties": ["objectSid"], "sizeLimit": [str(SIZE_LIMIT)]
    }
    assert groups(box) == before


def test_a_list_without_sids_never_settles_a_sid() -> None:
    """A member list without SIDs (a server that ignores `properties`) leaves a SID row
    unsure (None), so a refusal stays failed; with SIDs it is settled in any case."""
    sid = "S-1-5-21-1-2-3-1100"
    plain = Members.parse([{"dn": "CN=a,DC=x", "guid": "3F2504E0-4F89-11D3-9A0C-0305E82C3301"}])
    assert plain is not None
    assert plain.has(ident(sid)) is None
    with_sids = Members.parse([{"dn": "CN=a,DC=x", "objectSid": sid.lower()}])
    assert with_sids is not None
    assert with_sids.has(ident(sid)) is True
    assert with_sids.has(ident("S-1-5-21-1-2-3-1101")) is False


async def test_group_by_guid_and_sid(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """The group may be a GUID or a SID too; the membership read uses the same form."""
    objects = box.dump()["adaxes"]["objects"]
    m1, m2 = outsiders(box, RND)[:2]
    before = groups(box)
    tg = target(box, client, precheck=True)
    assert (await tg.apply(row(Op.ADD, objects[RND]["guid"], m1))).status is Status.OK
    assert (await tg.apply(row(Op.ADD, objects[RND]["sid"], m2))).status is Status.OK
    assert (await tg.apply(row(Op.ADD, objects[RND]["sid"], m2))).status is Status.NOOP
    before[RND] |= {m1, m2}
    assert groups(box) == before


# -- add --------------------------------------------------------------------------------------


async def test_add_member_and_add_again(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """An add is one POST; adding again is refused, the read shows the member: noop."""
    m = outsiders(box, RND)[0]
    before = groups(box)
    tg = target(box, client, precheck=False)
    assert await tg.apply(row(Op.ADD, RND, m)) == Result(Status.OK, http_status=200, attempts=1)
    assert await tg.apply(row(Op.ADD, RND, m)) == Result(Status.NOOP, http_status=200, attempts=1)
    assert calls(box) == ["POST", "POST", f"GET {RND}"]
    before[RND].add(m)
    assert groups(box) == before


async def test_refused_add_of_an_absent_member_fails(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """A refused add where the read shows the member absent is failed with the message."""
    sb = await start_sandbox(small_state(**{RND: {"denied": True}}))
    before = groups(sb)
    result = await target(sb, client, precheck=False).apply(row(Op.ADD, RND, outsiders(sb, RND)[0]))
    assert result == Result(Status.FAILED, http_status=200, attempts=1, error=DENIED)
    assert calls(sb) == ["POST", f"GET {RND}"]
    assert groups(sb) == before


# -- lost answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("op", [Op.REMOVE, Op.ADD])
async def test_lost_answer_then_refused_repeat_is_noop(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession, op: Op
) -> None:
    """The change is applied but its answer lost; the repeat is refused, the read shows
    the change done: noop, not failed."""
    seed = seed_losing_first_answer(later=3)
    sb = await start_sandbox(
        small_state(), SandboxConfig(faults=Faults(seed=seed, drop_after_apply_ratio=0.5))
    )
    before = groups(sb)
    m = sorted(before[RND])[0] if op is Op.REMOVE else outsiders(sb, RND)[0]
    result = await target(sb, client, precheck=False).apply(row(op, RND, m))
    assert result == Result(Status.NOOP, http_status=200, attempts=2)
    assert [e.status for e in sb.log] == [0, 200, 200]
    change = "POST" if op is Op.ADD else f"DELETE {RND}"
    assert calls(sb) == [change, change, f"GET {RND}"]
    if op is Op.REMOVE:
        before[RND].discard(m)
    else:
        before[RND].add(m)
    assert groups(sb) == before


async def test_lost_answer_during_a_move_ends_ok(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """A move whose add answer was lost: add noop after the check, removal ok: ok."""
    seed = seed_losing_first_answer(later=4)
    sb = await start_sandbox(
        small_state(), SandboxConfig(faults=Faults(seed=seed, drop_after_apply_ratio=0.5))
    )
    before = groups(sb)
    m = sorted(before[RND] - before[SUPPORT])[0]
    result = await target(sb, client, precheck=False).apply(row(Op.MOVE, RND, m, SUPPORT))
    assert result == Result(Status.OK, http_status=200, attempts=2)
    # The add sent twice (its first answer lost), the check, then the removal.
    assert calls(sb) == ["POST", "POST", f"GET {SUPPORT}", f"DELETE {RND}"]
    assert [e.status for e in sb.log] == [0, 200, 200, 200]
    before[RND].discard(m)
    before[SUPPORT].add(m)
    assert groups(sb) == before


# -- move -------------------------------------------------------------------------------------


async def test_move_adds_then_removes(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """A move is a POST to the destination, then a DELETE from the source, in that order."""
    before = groups(box)
    m = sorted(before[RND] - before[SUPPORT])[0]
    result = await target(box, client, precheck=False).apply(row(Op.MOVE, RND, m, SUPPORT))
    assert result == Result(Status.OK, http_status=200, attempts=1)
    assert calls(box) == ["POST", f"DELETE {RND}"]
    assert box.log[0].end <= box.log[1].start
    before[RND].discard(m)
    before[SUPPORT].add(m)
    assert groups(box) == before


async def test_move_with_pending_add_does_not_remove(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """When the add waits for approval the removal is not sent: pending, nothing changed."""
    sb = await start_sandbox(small_state(**{SUPPORT: {"approval": True}}))
    before = groups(sb)
    m = sorted(before[RND] - before[SUPPORT])[0]
    result = await target(sb, client, precheck=False).apply(row(Op.MOVE, RND, m, SUPPORT))
    assert result == Result(Status.PENDING, http_status=200, attempts=1)
    assert calls(sb) == ["POST"]
    assert groups(sb) == before


async def test_move_with_failed_add_does_not_remove(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """When the add is refused (and the member is indeed absent) nothing is removed."""
    sb = await start_sandbox(small_state(**{SUPPORT: {"denied": True}}))
    before = groups(sb)
    m = sorted(before[RND] - before[SUPPORT])[0]
    result = await target(sb, client, precheck=False).apply(row(Op.MOVE, RND, m, SUPPORT))
    assert result == Result(Status.FAILED, http_status=200, attempts=1, error=DENIED)
    assert calls(sb) == ["POST", f"GET {SUPPORT}"]
    assert groups(sb) == before


async def test_move_with_pending_removal_is_pending(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """Added, and the removal sent for approval: pending, the member is in both groups."""
    sb = await start_sandbox(small_state(**{RND: {"approval": True}}))
    before = groups(sb)
    m = sorted(before[RND] - before[SUPPORT])[0]
    result = await target(sb, client, precheck=False).apply(row(Op.MOVE, RND, m, SUPPORT))
    assert result == Result(Status.PENDING, http_status=200, attempts=1)
    assert calls(sb) == ["POST", f"DELETE {RND}"]
    before[SUPPORT].add(m)
    assert groups(sb) == before


async def test_move_already_done_is_noop(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """Both steps refused and checked (member in the destination, not the source): noop."""
    before = groups(box)
    m = sorted(before[SUPPORT] - before[RND])[0]
    result = await target(box, client, precheck=False).apply(row(Op.MOVE, RND, m, SUPPORT))
    assert result == Result(Status.NOOP, http_status=200, attempts=1)
    assert calls(box) == ["POST", f"GET {SUPPORT}", f"DELETE {RND}", f"GET {RND}"]
    assert groups(box) == before


async def test_precheck_move_decides_from_both_groups(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Precheck: moved already is noop, in neither is failed, both without a write."""
    before = groups(box)
    done = sorted(before[SUPPORT] - before[RND])[0]
    neither = sorted(set(outsiders(box, RND)) - before[SUPPORT])[0]
    tg = target(box, client, precheck=True)
    assert (await tg.apply(row(Op.MOVE, RND, done, SUPPORT))).status is Status.NOOP
    nowhere = await tg.apply(row(Op.MOVE, RND, neither, SUPPORT))
    assert nowhere.status is Status.FAILED
    assert nowhere.error is not None
    assert nowhere.error.startswith(f"member is not in group {RND}")
    assert sorted(calls(box)) == sorted([f"GET {RND}", f"GET {SUPPORT}"])
    assert groups(box) == before


# -- move_all ---------------------------------------------------------------------------------


async def test_move_all_records_moved(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """move_all lists both groups, adds (unless already there) and removes each member; it
    records who joined (`moved`) apart from who was in the destination already (`left`)."""
    before = groups(box)
    order = list(box.dump()["adaxes"]["objects"][RND]["members"])
    assert before[RND] & before[SUPPORT]  # some are in both: no add is sent for them
    result = await target(box, client, precheck=False).apply(
        row(Op.MOVE_ALL, RND, to_group=SUPPORT)
    )
    assert result.status is Status.OK
    assert result.error is None
    assert result.moved == tuple(m for m in order if m not in before[SUPPORT])
    assert result.left == tuple(m for m in order if m in before[SUPPORT])
    expected = [f"GET {RND}", f"GET {SUPPORT}"]
    for m in order:
        expected += ["POST"] * (m not in before[SUPPORT]) + [f"DELETE {RND}"]
    assert calls(box) == expected
    before[SUPPORT] |= before[RND]
    before[RND] = set()
    assert groups(box) == before
    # Now empty: noop, nothing moved, one read only.
    box.clear_log()
    empty = await target(box, client, precheck=False).apply(row(Op.MOVE_ALL, RND, to_group=SUPPORT))
    assert empty == Result(Status.NOOP, http_status=200, attempts=1, moved=(), left=())
    assert len(box.log) == 1


async def test_move_all_to_an_approval_group_is_pending(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """Every add waits for approval: pending, nothing moved, and no removal sent for anyone
    not already in the destination (those only leave the source)."""
    sb = await start_sandbox(small_state(**{SUPPORT: {"approval": True}}))
    before = groups(sb)
    both = before[RND] & before[SUPPORT]
    result = await target(sb, client, precheck=False).apply(row(Op.MOVE_ALL, RND, to_group=SUPPORT))
    assert (result.status, result.moved) == (Status.PENDING, ())
    assert set(result.left or ()) == both
    assert len([c for c in calls(sb) if c.startswith("DELETE")]) == len(both)
    before[RND] -= both
    assert groups(sb) == before


def seed_failing_some(n: int) -> tuple[int, list[str]]:
    """A 503-fault seed under which a move_all of `n` members (no retries) lists both groups
    fine, then
    fails some adds and some removals: with each member's fate, in listing order."""
    for seed in range(10_000):
        faults = Faults(seed=seed, error_503_ratio=0.25)
        box = FaultBox()

        def fails(box: FaultBox = box, faults: Faults = faults) -> bool:
            draw = box.draw(faults)
            return draw is not None and draw.before == "503"

        if fails() or fails():  # the two reads (source, destination) must go through
            continue
        fates = []
        for _ in range(n):
            fates.append("add" if fails() else "remove" if fails() else "moved")
        if {"add", "remove", "moved"} <= set(fates):
            return seed, fates
    raise AssertionError("no such seed")


async def test_move_all_with_some_failures(
    start_sandbox: StartSandbox, client: aiohttp.ClientSession
) -> None:
    """Some adds and some removals fail (503s, no retries): failed, "k of n", `moved` exactly
    those that left, nobody left in neither group, and no removal after a failed add."""
    state = small_state()
    objects = state["adaxes"]["objects"]
    order = list(objects[RND]["members"])
    # No member in both groups, so that every add succeeds or fails on its own request.
    objects[SUPPORT]["members"] = [m for m in objects[SUPPORT]["members"] if m not in order]
    seed, fates = seed_failing_some(len(order))
    sb = await start_sandbox(state, SandboxConfig(faults=Faults(seed=seed, error_503_ratio=0.25)))
    before = groups(sb)
    result = await target(sb, client, precheck=False, retries=0).apply(
        row(Op.MOVE_ALL, RND, to_group=SUPPORT)
    )
    moved = [m for m, fate in zip(order, fates, strict=True) if fate == "moved"]
    added = [m for m, fate in zip(order, fates, strict=True) if fate != "add"]
    assert result.status is Status.FAILED
    assert result.moved == tuple(moved)
    n = len(order)
    assert result.error is not None
    assert result.error.startswith(f"{n - len(moved)} of {n} members not moved: ")
    assert result.attempts == 1  # no retries
    expected = [f"GET {RND}", f"GET {SUPPORT}"]
    for fate in fates:
        expected += ["POST"] + [f"DELETE {RND}"] * (fate != "add")
    assert calls(sb) == expected
    before[RND] -= set(moved)
    before[SUPPORT] |= set(added)
    assert groups(sb) == before


# -- precheck ---------------------------------------------------------------------------------


async def test_precheck_answers_obvious_noops_without_a_change(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Precheck: removing a non-member and adding a member send no change request, and
    concurrent rows of a group share one read."""
    before = groups(box)
    members, others = sorted(before[RND])[:5], outsiders(box, RND)[:5]
    tg = target(box, client, precheck=True)
    rows = [row(Op.REMOVE, RND, m) for m in others] + [row(Op.ADD, RND, m) for m in members]
    results = await asyncio.gather(*(tg.apply(r) for r in rows))
    assert {r.status for r in results} == {Status.NOOP}
    assert calls(box) == [f"GET {RND}"]
    assert groups(box) == before


async def test_precheck_cache_follows_changes(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """After a removal the cache knows it: removing again is noop with no request."""
    m = sorted(groups(box)[RND])[0]
    tg = target(box, client, precheck=True)
    assert (await tg.apply(row(Op.REMOVE, RND, m))).status is Status.OK
    assert (await tg.apply(row(Op.REMOVE, RND, m))) == Result(Status.NOOP)
    assert calls(box) == [f"GET {RND}", f"DELETE {RND}"]


async def test_stale_cache_still_checks_refusals(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """Two rows remove one member at once: both pass the cache, one is refused, the read
    then shows the member gone: one ok, one noop."""
    m = sorted(groups(box)[RND])[0]
    before = groups(box)
    tg = target(box, client, precheck=True)
    results = await asyncio.gather(*(tg.apply(row(Op.REMOVE, RND, m)) for _ in range(2)))
    assert sorted(r.status for r in results) == sorted([Status.OK, Status.NOOP])
    before[RND].discard(m)
    assert groups(box) == before


async def test_precheck_unknown_group_fails(box: Sandbox, client: aiohttp.ClientSession) -> None:
    """An unknown group read with precheck fails the row with the server's message."""
    ghost = "CN=Ghosts,OU=Groups,DC=example,DC=com"
    result = await target(box, client, precheck=True).apply(
        row(Op.REMOVE, ghost, outsiders(box, RND)[0])
    )
    assert result == Result(
        Status.FAILED, http_status=404, attempts=1, error=f"The group '{ghost}' was not found."
    )


async def test_factory_builds_the_adaxes_adapter(
    box: Sandbox, client: aiohttp.ClientSession
) -> None:
    """make_target picks the adapter by kind; the token goes in Adm-Authorization."""
    auth = auth_for(TargetKind.ADAXES, Secret("adm-x"))
    assert await auth.headers() == {"Adm-Authorization": "adm-x"}
    assert isinstance(target(box, client, precheck=False), AdaxesTarget)


@pytest.mark.parametrize(
    "props",
    [
        {"objectSid": ["S-1-5-21-1-2-3-1100"]},  # current versions: every value an array
        {"objectSid": "S-1-5-21-1-2-3-1100"},  # other versions: a plain string
        [{"propertyName": "objectSid", "values": ["S-1-5-21-1-2-3-1100"]}],
    ],
)
def test_sids_are_read_from_arrays_and_strings(props: Any) -> None:
    """The member list's `properties` carry the SID as an array or a string: either way a
    row naming the SID (any case) finds the member, and another SID is settled absent."""
    members = Members.parse([{"dn": "CN=a,DC=x", "properties": props}])
    assert members is not None
    assert members.has("s-1-5-21-1-2-3-1100") is True
    assert members.has("S-1-5-21-1-2-3-1101") is False
