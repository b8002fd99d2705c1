"""An outcome is true: a change is `ok` only on the API's own success shape. Against a small
misbehaving aiohttp server on loopback (an SSO page in front of the portal, `{}`, truncated
JSON, `{"resultType": false}`), every such answer is a failed row naming what came back, and a
run whose first answers are all such stops (UnexpectedAnswers, an AuthRefused: exit 3)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from bulkgroups.http.auth import AuthRefused, auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import RetryPolicy
from bulkgroups.http.transport import Transport
from bulkgroups.model import Op, Row, Status, TargetKind
from bulkgroups.secret import Secret
from bulkgroups.targets.base import Adapter
from bulkgroups.targets.connect import make_target
from bulkgroups.targets.members import FIRST_ANSWERS, UnexpectedAnswers
from tests.support import run_cli

G = "0f8fad5b-d9cb-469f-a165-70867728950e"
M = "aaaaaaaa-0000-4000-8000-000000000001"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
AX_G = "CN=Sales,OU=Groups,DC=example,DC=com"
AX_M = "CN=Ann,OU=Users,DC=example,DC=com"

LOGIN_PAGE = b"<!DOCTYPE html><html><body><form>Sign in</form></body></html>"
Answer = Callable[[web.Request], web.Response]


def html(_: web.Request) -> web.Response:
    return web.Response(body=LOGIN_PAGE, content_type="text/html")


def envelope(members: list[str]) -> bytes:
    group = {"id": G, "name": "g", "members": [{"id": m} for m in members]}
    return orjson.dumps({"response": group, "count": 1, "status": 0, "statusCode": 200})


@contextlib.asynccontextmanager
async def server(answer: Answer) -> AsyncIterator[tuple[str, list[str]]]:
    """Serves `answer` to every request; yields the base URL and the methods it got."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.method)
        return answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def adapter(url: str, session: aiohttp.ClientSession, kind: TargetKind,
            *, precheck: bool = False) -> Adapter:
    token = "sk-x" if kind is TargetKind.DOCSPACE else "adm-x"
    t = Transport(session, base_url=url, auth=auth_for(kind, Secret(token)),
                  pacer=Pacer(rate=1000.0, concurrency=4),
                  policy=RetryPolicy(max_retries=0, base_s=0.01, cap_s=0.02), timeout_s=5.0)
    return make_target(kind, t, precheck=precheck)


def ds_row(op: Op = Op.REMOVE, member: str = M, n: int = 1) -> Row:
    return Row(n, n + 1, op, G, member, "")


@pytest.mark.parametrize(
    ("body", "content_type", "op"),
    [
        (LOGIN_PAGE, "text/html", Op.REMOVE),
        (b"{}", "application/json", Op.REMOVE),
        (b'{"response": {"id": "', "application/json", Op.ADD),
        (b"", "application/json", Op.ADD),
        (orjson.dumps({"status": False, "statusCode": 200, "response": {"id": G, "members": []}}),
         "application/json", Op.REMOVE),
    ],
)
async def test_docspace_answers_that_are_not_a_group_fail_the_row(
    client: aiohttp.ClientSession, body: bytes, content_type: str, op: Op
) -> None:
    """HTML, `{}`, truncated JSON, an empty body, a `status` that is False: failed with
    "unexpected answer … HTTP 200", never ok."""
    async with server(lambda _: web.Response(body=body, content_type=content_type)) as (url, _):
        result = await adapter(url, client, TargetKind.DOCSPACE).apply(ds_row(op))
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.startswith("unexpected answer: ") and result.error.endswith("HTTP 200")
    if content_type == "text/html":
        assert result.error == "unexpected answer: HTML page, HTTP 200"


async def test_docspace_group_still_listing_the_member_fails(
    client: aiohttp.ClientSession
) -> None:
    """A removal answered with the group that still lists the member did not happen; an add
    answered without the member did not either (a guest or terminated account)."""
    async with server(lambda _: web.Response(body=envelope([M]),
                                             content_type="application/json")) as (url, _):
        tg = adapter(url, client, TargetKind.DOCSPACE)
        removed = await tg.apply(ds_row(Op.REMOVE))
        added = await tg.apply(ds_row(Op.ADD, OTHER))
        really = await tg.apply(ds_row(Op.ADD, M))
    assert removed.status is Status.FAILED and removed.error == f"DocSpace still lists {M} in {G}"
    assert added.status is Status.FAILED and "did not add" in (added.error or "")
    assert really.status is Status.OK


async def test_first_answers_all_unexpected_stop_the_run(client: aiohttp.ClientSession) -> None:
    """FIRST_ANSWERS login pages in a row with no success: UnexpectedAnswers (AuthRefused,
    so the engine exits 3), naming what came back; the rows before it failed."""
    async with server(html) as (url, seen):
        tg = adapter(url, client, TargetKind.DOCSPACE)
        for n in range(1, FIRST_ANSWERS):
            assert (await tg.apply(ds_row(n=n))).status is Status.FAILED
        with pytest.raises(UnexpectedAnswers, match="HTTP 200") as err:
            await tg.apply(ds_row(n=FIRST_ANSWERS))
    assert isinstance(err.value, AuthRefused)
    assert len(seen) == FIRST_ANSWERS


async def test_unexpected_answers_after_a_success_only_fail_their_rows(
    client: aiohttp.ClientSession
) -> None:
    """Once the API has answered in its own shape, a later odd answer fails its row only."""
    answers = iter([web.Response(body=envelope([]), content_type="application/json")])

    def answer(request: web.Request) -> web.Response:
        return next(answers, None) or html(request)

    async with server(answer) as (url, _):
        tg = adapter(url, client, TargetKind.DOCSPACE)
        assert (await tg.apply(ds_row())).status is Status.OK
        for n in range(2, FIRST_ANSWERS + 4):
            assert (await tg.apply(ds_row(n=n))).status is Status.FAILED


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps({"resultType": False}),
        orjson.dumps({"resultType": "0"}),
        orjson.dumps({"resultType": 0.0}),
        orjson.dumps({"innerMessages": []}),
        LOGIN_PAGE,
    ],
)
async def test_adaxes_only_an_integer_result_type_0_is_ok(
    client: aiohttp.ClientSession, body: bytes
) -> None:
    """`{"resultType": false}` is not success although False == 0 in Python; nor is a
    string, a float, a missing field or an HTML page."""
    async with server(lambda _: web.Response(body=body)) as (url, _):
        tg = adapter(url, client, TargetKind.ADAXES)
        result = await tg.apply(Row(1, 2, Op.REMOVE, AX_G, AX_M))
    assert result.status is Status.FAILED
    assert (result.error or "").startswith("unexpected answer: ")


async def test_adaxes_result_type_0_is_ok(client: aiohttp.ClientSession) -> None:
    body = orjson.dumps({"resultType": 0, "innerMessages": [], "exception": None})
    async with server(lambda _: web.Response(body=body,
                                             content_type="application/json")) as (url, _):
        result = await adapter(url, client, TargetKind.ADAXES).apply(
            Row(1, 2, Op.REMOVE, AX_G, AX_M))
    assert result.status is Status.OK


async def test_a_run_behind_a_login_page_exits_3(tmp_path: Path) -> None:
    """The CLI: a DocSpace job whose portal answers a login page with 200 stops with exit 3
    and says so, after FIRST_ANSWERS requests at most per worker, and records no `ok`."""
    rows = "".join(f"remove,{G},{M[:-2]}{n:02d},\n" for n in range(40))
    (tmp_path / "input.csv").write_text("op,group,member,to_group\n" + rows, encoding="utf-8")
    async with server(html) as (url, seen):
        (tmp_path / "job.toml").write_text(
            "[job]\nname = \"t\"\n[target]\nkind = \"docspace\"\n"
            f"base_url = \"{url}\"\nallow_insecure_http = true\ntoken_env = \"BG_TEST_TOKEN\"\n"
            "[input]\npath = \"input.csv\"\n[output]\nresults = \"results.jsonl\"\n"
            "[limits]\nrate = 1000\nconcurrency = 1\nbatch_size = 1\nprecheck = false\n",
            encoding="utf-8")
        done = await run_cli("run", str(tmp_path / "job.toml"), "--quiet", token="sk-x")
    assert done.code == 3, done.stderr
    assert "check base_url" in done.stderr
    assert len(seen) < 40
    lines = (tmp_path / "results.jsonl").read_bytes().splitlines()
    assert not any(orjson.loads(line)["status"] == "ok" for line in lines)
