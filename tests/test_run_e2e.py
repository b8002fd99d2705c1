"""`bulkgroups run` end to end: the real CLI in a subprocess, real HTTP to the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bulkgroups.sandbox import Faults, Sandbox, SandboxConfig, make_state
from bulkgroups.sandbox.log import max_in_window, max_overlap
from tests.support import (
    AX_TOKEN,
    DS_TOKEN,
    last_outcomes,
    results_lines,
    run_cli,
    write_job,
)


def ds_groups(sb: Sandbox) -> dict[str, set[str]]:
    return {g: set(v["members"]) for g, v in sb.dump()["docspace"]["groups"].items()}


def ax_groups(sb: Sandbox) -> dict[str, set[str]]:
    objects = sb.dump()["adaxes"]["objects"]
    return {dn: set(o["members"]) for dn, o in objects.items() if o["type"] == "group"}


async def test_docspace_every_op_ends_in_the_exact_state(tmp_path: Path) -> None:
    """remove, move, move_all and add on DocSpace leave exactly the expected memberships."""
    state = make_state(docspace_groups=3, docspace_members=20, guests=2, terminated=1)
    async with Sandbox(state) as sb:
        before = ds_groups(sb)
        g0, g1, g2 = list(before)
        users = state["docspace"]["users"]
        # Movers not in g2, so the move_all beside them cannot race them into g1; and real
        # users, since DocSpace adds no guest or terminated account.
        m0 = sorted(m for m in before[g0] - before[g2] if users[m]["kind"] == "user")
        outsiders = sorted(u for u in users if not any(u in s for s in before.values())
                           and users[u]["kind"] == "user")
        rows = (
            [{"op": "remove", "group": g0, "member": m} for m in m0[:5]]
            + [{"op": "move", "group": g0, "member": m, "to_group": g1} for m in m0[5:8]]
            + [{"op": "move_all", "group": g2, "to_group": g1}]
            + [{"op": "add", "group": g0, "member": u} for u in outsiders[:3]]
        )
        job = write_job(tmp_path, sb, rows=rows)
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        movable = {m for m in before[g2] if users.get(m, {}).get("kind") == "user"}
        expected = {
            g0: (before[g0] - set(m0[:8])) | set(outsiders[:3]),
            g1: before[g1] | set(m0[5:8]) | movable,
            g2: set(),
        }
        assert ds_groups(sb) == expected
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert sorted(outcomes) == list(range(1, len(rows) + 1))
    assert {o["status"] for o in outcomes.values()} == {"ok"}
    move_all = next(o for o in outcomes.values() if o["op"] == "move_all")
    assert set(move_all["moved"]) == movable - before[g1] - set(m0[5:8])
    assert set(move_all["moved"]) | set(move_all["left"]) == before[g2]


async def test_adaxes_every_op_with_approval_and_denial(tmp_path: Path) -> None:
    """Adaxes rows by DN, GUID and SID end ok; approval gives pending, denial failed."""
    state = make_state(adaxes_groups=3, adaxes_members=12)
    objects = state["adaxes"]["objects"]
    groups = [dn for dn, o in objects.items() if o["type"] == "group"]
    plain, other, third = groups
    objects[third]["approval"] = True
    async with Sandbox(state) as sb:
        before = ax_groups(sb)
        members = sorted(before[plain])
        outsider = next(dn for dn, o in objects.items()
                        if o["type"] == "user" and not any(dn in s for s in before.values()))
        rows = [
            {"op": "remove", "group": plain, "member": members[0]},
            {"op": "remove", "group": objects[plain]["guid"],
             "member": objects[members[1]]["guid"]},
            {"op": "remove", "group": plain, "member": objects[members[2]]["sid"]},
            {"op": "move", "group": plain, "member": members[3], "to_group": other},
            {"op": "add", "group": other, "member": outsider},
            {"op": "add", "group": third, "member": outsider},
            {"op": "remove", "group": plain, "member": outsider},
        ]
        job = write_job(tmp_path, sb, kind="adaxes", rows=rows, fmt="jsonl")
        done = await run_cli("run", str(job), "--quiet", token=AX_TOKEN)
        assert done.code == 0, done.stderr
        after = ax_groups(sb)
    assert after[plain] == before[plain] - set(members[:4])
    assert after[other] == before[other] | {members[3], outsider}
    assert after[third] == before[third]
    statuses = [o["status"] for _, o in sorted(last_outcomes(tmp_path / "results.jsonl").items())]
    assert statuses == ["ok", "ok", "ok", "ok", "ok", "pending", "noop"]


async def test_bad_rows_are_reported_with_lines_while_good_rows_finish(tmp_path: Path) -> None:
    """Broken rows become invalid outcomes with line numbers; the good rows all complete."""
    async with Sandbox(make_state()) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows: list[dict[str, str]] = [{"op": "remove", "group": g0, "member": m}
                                      for m in members[:10]]
        rows.insert(3, {"op": "remove", "group": g0, "member": "not-a-uuid"})
        rows.insert(7, {"op": "explode", "group": g0, "member": members[20]})
        job = write_job(tmp_path, sb, rows=rows)
        done = await run_cli("validate", str(job))
        assert done.code == 1
        assert "line 5 (row 4): member: not a UUID" in done.stdout
        assert "line 9 (row 8): unknown op 'explode'" in done.stdout
        done = await run_cli("run", str(job))
        assert done.code == 1
        assert "invalid" in done.stdout and "results:" in done.stdout
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    bad = {o["line"]: o["error"] for o in outcomes.values() if o["status"] == "invalid"}
    assert bad == {5: "member: not a UUID", 9: "unknown op 'explode'"}
    assert sum(o["status"] == "ok" for o in outcomes.values()) == 10


async def test_faulty_server_still_ends_every_row_ok(tmp_path: Path) -> None:
    """With 10% 503s and 5% dropped connections, retries bring every row to ok."""
    state = make_state(docspace_groups=2, docspace_members=150)
    config = SandboxConfig(
        faults=Faults(seed=3, error_503_ratio=0.10, drop_ratio=0.05, retry_after_s=0.05)
    )
    async with Sandbox(state, config=config) as sb:
        groups = ds_groups(sb)
        g0, g1 = list(groups)
        rows = [{"op": "remove", "group": g0, "member": m} for m in sorted(groups[g0])]
        rows += [{"op": "move", "group": g1, "member": m, "to_group": g0}
                 for m in sorted(groups[g1])[:50]]
        job = write_job(tmp_path, sb, rows=rows, limits={"max_retries": 8})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        faults = [e for e in sb.log if e.status in (0, 503)]
        assert len(faults) > 20  # the faults really happened
        assert ds_groups(sb)[g0] == set(sorted(groups[g1])[:50])
    outcomes = last_outcomes(tmp_path / "results.jsonl")
    assert len(outcomes) == 200 and {o["status"] for o in outcomes.values()} == {"ok"}
    assert any(o["attempts"] > 1 for o in outcomes.values())


async def test_retry_after_pauses_every_worker(tmp_path: Path) -> None:
    """A 429 with Retry-After 2 s: no request starts inside the pause, from the server's log."""
    async with Sandbox(make_state(docspace_members=80)) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False, "rate": 200})
        sb.inject(status=429, count=1, retry_after_s=2.0)
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        limited = [e for e in sb.log if e.status == 429]
        assert len(limited) == 1
        pause_from = limited[0].end
        inside = [e for e in sb.log if pause_from + 0.25 < e.start < pause_from + 1.75]
        assert inside == []
        after = [e for e in sb.log if e.start >= pause_from + 1.75]
        assert len(after) >= 60  # the run went on after the pause


async def test_pacing_and_concurrency_from_the_server_log(tmp_path: Path) -> None:
    """At rate 20 and concurrency 4, no window holds more than 20 starts nor 4 in flight."""
    config = SandboxConfig(faults=Faults(latency_ms=120, jitter_ms=60, seed=1))
    async with Sandbox(make_state(docspace_members=70), config=config) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:60]]
        job = write_job(tmp_path, sb, rows=rows,
                        limits={"rate": 20, "concurrency": 4, "precheck": False})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        starts = [e.start for e in sb.log]
        assert len(starts) == 60
        # 50 ms of margin for the loopback hop on a shared machine.
        assert max_in_window(starts, 0.95) <= 20
        assert max(starts) - min(starts) >= 59 / 20 * 0.95
        assert max_overlap((e.start, e.end) for e in sb.log) <= 4


async def test_wrong_token_stops_the_run_and_never_shows_the_token(tmp_path: Path) -> None:
    """A refused token: exit 3 after a handful of requests; the token is in no output."""
    secret = "sk-wrong-" + "x7Q" * 8
    async with Sandbox(make_state(docspace_members=200)) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        done = await run_cli("run", str(job), token=secret)
        assert done.code == 3
        assert "401" in done.stderr and "credentials" in done.stderr
        assert len(sb.log) <= 12
        assert all(e.status == 401 for e in sb.log)
    produced = [done.stdout, done.stderr] + [
        p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file()
    ]
    assert not any(secret in text or secret[3:] in text for text in produced)
    assert results_lines(tmp_path / "results.jsonl") == []


async def test_missing_scope_on_first_requests_is_refused(tmp_path: Path) -> None:
    """A key without accounts:write gets 403 on the first writes: exit 3, nothing failed."""
    state: dict[str, Any] = make_state()
    state["docspace"]["api_keys"]["sk-read-only"] = ["accounts:read"]
    async with Sandbox(state) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members]
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        done = await run_cli("run", str(job), token="sk-read-only")
    assert done.code == 3 and "403" in done.stderr
    assert DS_TOKEN not in done.stdout


async def test_dry_run_sends_nothing(tmp_path: Path) -> None:
    """--dry-run prints the plan and the sandbox sees no request."""
    async with Sandbox(make_state()) as sb:
        g0 = next(iter(sb.dump()["docspace"]["groups"]))
        members = sorted(sb.dump()["docspace"]["groups"][g0]["members"])
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:5]]
        job = write_job(tmp_path, sb, rows=rows)
        done = await run_cli("run", str(job), "--dry-run")
        assert done.code == 0, done.stderr
        assert "would send at least 5 change requests" in done.stdout
        assert sb.log == []
    assert not (tmp_path / "results.jsonl").exists()


async def test_rows_about_one_member_take_effect_in_input_order(tmp_path: Path) -> None:
    """A removal from g0 and then a move from g1 back into g0, for members in both groups,
    run concurrently with slow answers: the move is decided after the removal is made, so
    every member ends in g0 (not in neither group)."""
    state = make_state(docspace_groups=2, docspace_members=40, guests=0, terminated=0)
    config = SandboxConfig(faults=Faults(seed=1, error_503_ratio=0.3, retry_after_s=0.05,
                                         latency_ms=5, jitter_ms=20))
    async with Sandbox(state, config=config) as sb:
        groups = ds_groups(sb)
        g0, g1 = list(groups)
        both = sorted(groups[g0] & groups[g1])
        assert len(both) >= 5
        rows = [{"op": "remove", "group": g0, "member": m} for m in both]
        rows += [{"op": "move", "group": g1, "member": m, "to_group": g0} for m in both]
        job = write_job(tmp_path, sb, rows=rows, limits={"concurrency": 10, "max_retries": 10})
        done = await run_cli("run", str(job), "--quiet")
        assert done.code == 0, done.stderr
        after = ds_groups(sb)
        assert set(both) <= after[g0]
        assert not set(both) & after[g1]
