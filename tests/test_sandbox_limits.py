"""DocSpace's rate limits in the sandbox: concurrency cap, sliding window, daily write cap."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bulkgroups.sandbox import Faults, Limits, Sandbox, SandboxConfig, make_state


def first_group(state: dict[str, Any]) -> str:
    return next(iter(state["docspace"]["groups"]))


async def test_sixteenth_concurrent_write_is_refused(start_sandbox, http, ds_auth):
    """20 concurrent writes under a cap of 15: 5 refused at once with 429 and no Retry-After."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(faults=Faults(latency_ms=800)))
    url = f"{sb.base_url}/api/2.0/group/{first_group(state)}/members"

    async def write() -> tuple[int, str | None]:
        async with http.delete(url, json={"members": []}, headers=ds_auth) as r:
            return r.status, r.headers.get("Retry-After")

    answers = await asyncio.gather(*(write() for _ in range(20)))
    assert sorted(s for s, _ in answers) == [200] * 15 + [429] * 5
    assert all(after is None for s, after in answers if s == 429)
    refused = [e for e in sb.log if e.status == 429]
    served = [e for e in sb.log if e.status == 200]
    assert len(refused) == 5
    assert len(served) == 15
    # refused while all 15 were still in flight, and refused at once
    assert max(e.end for e in refused) < min(e.end for e in served)
    assert all(e.end - e.start < 0.4 for e in refused)
    assert [e.writes_in_flight for e in refused] == [16] * 5  # 15 held, plus itself
    assert sorted(e.writes_in_flight for e in served) == list(range(1, 16))


async def test_reads_have_their_own_cap(start_sandbox, http, ds_auth):
    """Concurrent GETs are capped by max_concurrent_reads, separately from writes."""
    state = make_state()
    limits = Limits(max_concurrent_reads=2)
    sb = await start_sandbox(state, SandboxConfig(limits=limits, faults=Faults(latency_ms=500)))
    read = f"{sb.base_url}/api/2.0/group/{first_group(state)}"

    async def get() -> int:
        async with http.get(read, headers=ds_auth) as r:
            return r.status

    async def delete() -> int:
        async with http.delete(read + "/members", json={"members": []}, headers=ds_auth) as r:
            return r.status

    statuses = await asyncio.gather(*(get() for _ in range(4)), delete())
    assert sorted(statuses[:4]) == [200, 200, 429, 429]
    assert statuses[4] == 200


async def test_sliding_window(start_sandbox, http, ds_auth):
    """30 per 5 s: the 31st is 429 with an empty body, X-RateLimit-Limit and -Remaining: 0 and
    no Retry-After; successes carry no X-RateLimit-* header; other credentials are not hit."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(limits=Limits(window_requests=30, window_s=5.0)))
    url = f"{sb.base_url}/api/2.0/group"
    for _ in range(30):
        async with http.get(url, headers=ds_auth) as r:
            assert r.status == 200
            assert not [h for h in r.headers if h.lower().startswith("x-ratelimit")]
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 429
        assert await r.read() == b""
        assert r.headers["X-RateLimit-Limit"] == "30"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert "Retry-After" not in r.headers
        assert "X-RateLimit-Reset" not in r.headers
    starts = [e.start for e in sb.log]
    assert starts[-1] - starts[0] < 5.0  # all 31 fell inside one window
    sign_in = {"userName": "admin@example.com", "password": "test-password"}
    async with http.post(f"{sb.base_url}/api/2.0/authentication", json=sign_in) as r:
        token = (await r.json())["response"]["token"]
    async with http.get(url, headers={"Authorization": token}) as r:
        assert r.status == 200  # limits are per credential


async def test_window_slot_is_kept_when_concurrency_refuses(start_sandbox, http, ds_auth):
    """A write admitted by the window and refused by the concurrency limiter (no headers,
    empty body) still spends its window slot."""
    sb = await start_sandbox(
        config=SandboxConfig(
            limits=Limits(window_requests=3, window_s=60.0, max_concurrent_writes=0)
        )
    )
    gid = next(iter(sb.dump()["docspace"]["groups"]))
    url = f"{sb.base_url}/api/2.0/group/{gid}/members"
    for _ in range(3):
        async with http.delete(url, json={"members": []}, headers=ds_auth) as r:
            assert r.status == 429
            assert await r.read() == b""
            assert not [h for h in r.headers if h.lower().startswith(("x-ratelimit", "retry"))]
    async with http.get(url[: -len("/members")], headers=ds_auth) as r:
        assert r.status == 429  # the window is full now: the refused writes took its slots
        assert r.headers["X-RateLimit-Remaining"] == "0"


async def test_window_frees_up(start_sandbox, http, ds_auth):
    """After the oldest request leaves the window, requests are served again."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(limits=Limits(window_requests=2, window_s=0.3)))
    url = f"{sb.base_url}/api/2.0/group"
    statuses = []
    for _ in range(3):
        async with http.get(url, headers=ds_auth) as r:
            statuses.append(r.status)
    assert statuses == [200, 200, 429]
    status = 429
    for _ in range(100):  # bounded poll, ~2 s at most
        await asyncio.sleep(0.02)
        async with http.get(url, headers=ds_auth) as r:
            status = r.status
        if status == 200:
            break
    assert status == 200


async def test_daily_cap_counts_post_and_put_only(
    start_sandbox, http: aiohttp.ClientSession, ds_auth
):
    """The daily cap counts POST and PUT; DELETE and GET are never refused by it."""
    state = make_state()
    gid = first_group(state)
    users = list(state["docspace"]["users"])
    sb = await start_sandbox(state, SandboxConfig(limits=Limits(daily_writes=3)))
    base = f"{sb.base_url}/api/2.0/group/{gid}"
    body = {"members": users[:1]}
    async with http.post(base + "/members", json=body, headers=ds_auth) as r:
        assert r.status == 200
    for _ in range(2):
        async with http.put(base + "/members", json=body, headers=ds_auth) as r:
            assert r.status == 200
    for _ in range(3):
        async with http.delete(base + "/members", json=body, headers=ds_auth) as r:
            assert r.status == 200
    async with http.put(base + "/members", json=body, headers=ds_auth) as r:
        assert r.status == 429
        assert await r.read() == b""
        assert 86000 < int(r.headers["Retry-After"]) <= 86400
        reset = int(r.headers["X-RateLimit-Reset"])
        assert abs(reset - time.time() - int(r.headers["Retry-After"])) < 5  # a Unix time
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == "0"
    async with http.post(base + "/members", json=body, headers=ds_auth) as r:
        assert r.status == 429
    async with http.delete(base + "/members", json=body, headers=ds_auth) as r:
        assert r.status == 200
    async with http.get(base, headers=ds_auth) as r:
        assert r.status == 200


async def test_limits_off_and_live_change(sandbox: Sandbox, http, state, ds_auth):
    """Limits.off() lifts every limit; replacing sb.config.limits takes effect at once."""
    url = f"{sandbox.base_url}/api/2.0/group"
    sandbox.config.limits = Limits(window_requests=1)
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 200
    async with http.get(url, headers=ds_auth) as r:
        assert r.status == 429
    sandbox.config.limits = Limits.off()
    for _ in range(3):
        async with http.get(url, headers=ds_auth) as r:
            assert r.status == 200
            assert "X-RateLimit-Limit" not in r.headers
    assert Limits.off() == Limits(None, None, None, 60.0, None)


async def test_adaxes_has_no_limits(start_sandbox, http, ax_auth):
    """Adaxes requests are never rate limited, whatever the DocSpace limits say."""
    state = make_state()
    sb = await start_sandbox(state, SandboxConfig(limits=Limits(window_requests=1)))
    group = next(dn for dn, o in state["adaxes"]["objects"].items() if o["type"] == "group")
    for _ in range(3):
        url = f"{sb.adaxes_url}/api/directoryObjects/groupMembers"
        async with http.get(url, params={"group": group}, headers=ax_auth) as r:
            assert r.status == 200
