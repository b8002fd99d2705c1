"""What every run leaves for monitoring and people: the Prometheus textfile, the webhook post,
and the count of rows a stopped run never reached. Real runs of the CLI against the sandbox;
webhook receivers are real aiohttp servers on 127.0.0.1 that record what they get."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bulkgroups.finish import RunEnd
from bulkgroups.notify import notify
from bulkgroups.results.file import read_meta
from bulkgroups.sandbox import Sandbox, make_state
from tests.support import DS_TOKEN, run_cli, write_job


def _with(job: Path, *, output: str = "", notify: str = "") -> Path:
    text = job.read_text(encoding="utf-8")
    if output:
        text = text.replace('results = "results.jsonl"', f'results = "results.jsonl"\n{output}')
    if notify:
        text += f"[notify]\n{notify}\n"
    job.write_text(text, encoding="utf-8")
    return job


def _metrics(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file, parsed by prometheus_client's own parser."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def _rows(sb: Sandbox, n: int) -> list[dict[str, str]]:
    groups = sb.dump()["docspace"]["groups"]
    g0 = next(iter(groups))
    return [{"op": "remove", "group": g0, "member": m} for m in sorted(groups[g0]["members"])][:n]


# -- metrics ------------------------------------------------------------------------------


async def test_metrics_written_after_a_run_and_kept_across_a_refused_one(tmp_path: Path) -> None:
    async with Sandbox(make_state(docspace_members=40)) as sb:
        rows = [*_rows(sb, 30), {"op": "remove", "group": "not-a-uuid", "member": "x"}]
        job = _with(write_job(tmp_path, sb, rows=rows, name="night"),
                    output='metrics = "prom/night.prom"')
        before = time.time()
        done = await run_cli("run", str(job))
        assert done.code == 1, done.stderr  # one invalid row
        prom = tmp_path / "prom" / "night.prom"
        m = _metrics(prom)
        j = (("job", "night"),)
        assert m[("bulkgroups_exit_code", j)] == 1
        sent = sum(m[("bulkgroups_rows", (("job", "night"), ("status", st)))]
                   for st in ("ok", "noop", "failed", "pending"))
        assert sent == 30 and m[("bulkgroups_rows", (("job", "night"), ("status", "ok")))] > 20
        assert m[("bulkgroups_rows", (("job", "night"), ("status", "invalid")))] == 1
        assert m[("bulkgroups_rows", (("job", "night"), ("status", "not_reached")))] == 0
        assert 0 < m[("bulkgroups_run_seconds", j)] < 60
        completed = m[("bulkgroups_last_completed_timestamp_seconds", j)]
        assert before <= completed <= time.time()
        assert m[("bulkgroups_last_run_timestamp_seconds", j)] == completed

        # A wrong token: refused (exit 3) with rows never reached; the file is replaced and
        # still parses, and the last completed run is the one before.
        (tmp_path / "results.jsonl").rename(tmp_path / "first.jsonl")
        (tmp_path / "results.meta.json").rename(tmp_path / "first.meta.json")
        done = await run_cli("run", str(job), token="sk-wrong-token-000000")
        assert done.code == 3, done.stderr
    m = _metrics(prom)
    assert m[("bulkgroups_exit_code", j)] == 3
    assert m[("bulkgroups_last_completed_timestamp_seconds", j)] == completed
    assert m[("bulkgroups_last_run_timestamp_seconds", j)] > completed
    # The invalid row is written before the refusal or never reached, as the rows race the
    # first answer; either way every one of the 31 input rows is counted once.
    not_reached = m[("bulkgroups_rows", (("job", "night"), ("status", "not_reached")))]
    invalid = m[("bulkgroups_rows", (("job", "night"), ("status", "invalid")))]
    assert not_reached >= 30 and not_reached + invalid == 31
    assert not [p for p in prom.parent.iterdir() if p != prom]  # no temporary file left
    assert "sk-wrong" not in prom.read_text()


async def test_metrics_of_a_run_refused_before_it_starts(tmp_path: Path) -> None:
    """The max_changes cap refuses the run before any metadata: exit 3, every row not
    reached, last_completed 0 (no run of this job ever got through)."""
    async with Sandbox(make_state(docspace_members=40)) as sb:
        job = _with(write_job(tmp_path, sb, rows=_rows(sb, 20), name="capped",
                              safety={"max_changes": 5}),
                    output='metrics = "capped.prom"')
        done = await run_cli("run", str(job))
    assert done.code == 3 and "max_changes" in done.stderr
    m = _metrics(tmp_path / "capped.prom")
    j = (("job", "capped"),)
    assert m[("bulkgroups_exit_code", j)] == 3
    assert m[("bulkgroups_last_completed_timestamp_seconds", j)] == 0
    assert m[("bulkgroups_rows", (("job", "capped"), ("status", "not_reached")))] == 20


async def test_metrics_of_a_job_error_found_at_run_time(tmp_path: Path) -> None:
    """The token variable is unset: exit 2, still a metrics file saying so."""
    async with Sandbox(make_state(docspace_members=20)) as sb:
        job = _with(write_job(tmp_path, sb, rows=_rows(sb, 7), name="unset"),
                    output='metrics = "unset.prom"')
        job.write_text(job.read_text().replace("BG_TEST_TOKEN", "BG_TEST_NOT_SET"))
        done = await run_cli("run", str(job))
    assert done.code == 2 and "BG_TEST_NOT_SET" in done.stderr
    m = _metrics(tmp_path / "unset.prom")
    assert m[("bulkgroups_exit_code", (("job", "unset"),))] == 2
    assert m[("bulkgroups_rows", (("job", "unset"), ("status", "not_reached")))] == 7


async def test_a_metrics_path_must_end_in_prom(tmp_path: Path) -> None:
    async with Sandbox(make_state()) as sb:
        job = _with(write_job(tmp_path, sb, rows=_rows(sb, 1)), output='metrics = "m.txt"')
        done = await run_cli("validate", str(job))
    assert done.code == 2 and "[output] metrics" in done.stderr and ".prom" in done.stderr


# -- rows never reached -------------------------------------------------------------------


async def test_a_refused_run_counts_the_rows_it_never_reached(tmp_path: Path) -> None:
    """'invalid 4 / total 4' for a 246-row input was wrong: the summary, the metadata and
    `report` say finished vs not reached, and report says how the run ended."""
    async with Sandbox(make_state(docspace_members=60)) as sb:
        rows = _rows(sb, 50) + [{"op": "remove", "group": "bad", "member": "x"}] * 2
        job = write_job(tmp_path, sb, rows=rows, limits={"precheck": False})
        done = await run_cli("run", str(job), token="sk-wrong-token-000000")
    assert done.code == 3
    assert "not reached" in done.stdout and "52" in done.stdout, done.stdout
    meta = read_meta(tmp_path / "results.jsonl")
    assert meta is not None
    run = meta["runs"][-1]
    assert run["exit"] == 3 and run["stopped"] == "credentials refused"
    finished = sum(run["counts"].values())
    assert run["not_reached"] == 52 - finished
    rep = await run_cli("report", str(tmp_path / "results.jsonl"))
    assert rep.code == 0, rep.stderr
    assert "not reached" in rep.stdout and "credentials refused" in rep.stdout
    assert "exit 3" in rep.stdout or " 3 " in rep.stdout


# -- notifications ------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[web.Request, Receiver], Awaitable[web.StreamResponse]]


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[Handler], Awaitable[Receiver]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> Receiver:
        rec = Receiver(url="")

        async def handle(request: web.Request) -> web.StreamResponse:
            rec.posts.append(orjson.loads(await request.read()))
            rec.got.set()
            return await handler(request, rec)

        app = web.Application()
        app.router.add_post("/hooks/T000/B000/secret-part", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        rec.url = f"http://127.0.0.1:{port}/hooks/T000/B000/secret-part"
        return rec

    yield start
    for runner in runners:
        await runner.cleanup()


async def _ok(request: web.Request, rec: Receiver) -> web.StreamResponse:
    return web.Response(text="ok")


async def _fail(request: web.Request, rec: Receiver) -> web.StreamResponse:
    return web.Response(status=500, text="no")


async def _hang(request: web.Request, rec: Receiver) -> web.StreamResponse:
    await asyncio.Event().wait()  # never answers; the client's timeout ends it
    raise AssertionError("unreachable")


async def test_failed_rows_post_a_slack_compatible_summary(
    tmp_path: Path, receiver: Callable[[Handler], Awaitable[Receiver]]
) -> None:
    rec = await receiver(_ok)
    async with Sandbox(make_state(docspace_members=20)) as sb:
        missing = "00000000-0000-4000-8000-00000000dead"
        rows = [*_rows(sb, 5), {"op": "remove", "group": missing,
                                "member": "00000000-0000-4000-8000-000000000001"}]
        job = _with(write_job(tmp_path, sb, rows=rows, name="hooked"),
                    notify='webhook_env = "BG_TEST_HOOK"')
        done = await run_cli("run", str(job), env={"BG_TEST_HOOK": rec.url})
    assert done.code == 1, done.stderr
    assert len(rec.posts) == 1
    post = rec.posts[0]
    assert post["job"] == "hooked" and post["exit"] == 1
    assert post["counts"]["failed"] == 1 and post["counts"]["ok"] == 5
    assert "hooked" in post["text"] and "failed 1" in post["text"]
    assert "bulkgroups resume" in post["text"]
    everything = orjson.dumps(post).decode() + done.stdout + done.stderr
    assert DS_TOKEN not in everything and "secret-part" not in everything


async def test_a_clean_run_posts_nothing(
    tmp_path: Path, receiver: Callable[[Handler], Awaitable[Receiver]]
) -> None:
    rec = await receiver(_ok)
    async with Sandbox(make_state(docspace_members=20)) as sb:
        job = _with(write_job(tmp_path, sb, rows=_rows(sb, 5)),
                    notify='webhook_env = "BG_TEST_HOOK"')
        done = await run_cli("run", str(job), env={"BG_TEST_HOOK": rec.url})
    assert done.code == 0, done.stderr
    assert rec.posts == []


async def test_a_refused_run_posts_and_a_failing_receiver_keeps_the_exit_code(
    tmp_path: Path, receiver: Callable[[Handler], Awaitable[Receiver]]
) -> None:
    rec = await receiver(_fail)
    async with Sandbox(make_state(docspace_members=20)) as sb:
        job = _with(write_job(tmp_path, sb, rows=_rows(sb, 5), limits={"precheck": False}),
                    notify='webhook_env = "BG_TEST_HOOK"')
        done = await run_cli("run", str(job), token="sk-wrong-token-000000",
                             env={"BG_TEST_HOOK": rec.url})
    assert done.code == 3  # the run's own status, not the notification's
    assert len(rec.posts) == 3  # bounded retries of a 500
    assert rec.posts[0]["exit"] == 3 and rec.posts[0]["stopped"] == "credentials refused"
    assert "notification not delivered" in done.stderr and "HTTP 500" in done.stderr
    assert "secret-part" not in done.stderr and "127.0.0.1" not in done.stderr


def _end(tmp_path: Path) -> RunEnd:
    return RunEnd(job="j", results=tmp_path / "r.jsonl", started=time.time() - 5,
                  ended=time.time(), code=3, stopped="credentials refused",
                  counts={"ok": 0}, not_reached=10)


async def test_a_hanging_receiver_is_given_up_on_in_bounded_time(
    tmp_path: Path, receiver: Callable[[Handler], Awaitable[Receiver]]
) -> None:
    rec = await receiver(_hang)
    warnings: list[str] = []
    t0 = time.monotonic()
    ok = await notify("HOOK", _end(tmp_path), environ={"HOOK": rec.url}, warn=warnings.append,
                      attempts=2, timeout_s=0.3, backoff_s=(0.05,))
    elapsed = time.monotonic() - t0
    assert not ok and len(rec.posts) == 2
    assert elapsed < 0.3 * 2 + 0.05 + 1.0
    assert "no answer within 0.3 s" in warnings[0] and "secret-part" not in warnings[0]


async def test_an_unset_or_plain_http_webhook_is_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    assert not await notify("HOOK", _end(tmp_path), environ={}, warn=warnings.append)
    assert not await notify("HOOK", _end(tmp_path),
                            environ={"HOOK": "http://hooks.example.com/T/B/secret-part"},
                            warn=warnings.append)
    assert "HOOK is not set" in warnings[0]
    assert "https" in warnings[1] and "secret-part" not in warnings[1]
