"""`python -m bulkgroups.sandbox` (the `bulkgroups sandbox` command): help, serve, stop."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from bulkgroups.sandbox.cli import sandbox_command

OPTIONS = (
    "--host", "--port", "--state", "--dump", "--latency-ms", "--jitter-ms", "--fail-503",
    "--drop", "--drop-after-apply", "--ratelimit-429", "--retry-after-s", "--seed",
    "--no-limits", "--max-concurrent-writes", "--window-requests", "--daily-writes",
    "--token-ttl-s",
)  # fmt: skip


def test_help_lists_every_option():
    """--help names every option, each with help text."""
    result = CliRunner().invoke(sandbox_command, ["--help"])
    assert result.exit_code == 0
    for option in OPTIONS:
        line = next((ln for ln in result.output.splitlines() if ln.strip().startswith(option)), "")
        assert line, option
    assert all(p.help for p in sandbox_command.params if p.name != "help")  # type: ignore[attr-defined]


def test_bad_state_is_a_usage_error(tmp_path: Path):
    """An invalid --state file exits 2 with a message, serving nothing."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"ldap": {}}', encoding="utf-8")
    result = CliRunner().invoke(sandbox_command, ["--state", str(bad), "--port", "0"])
    assert result.exit_code == 2
    assert "--state" in result.output


async def start_cli(*args: str) -> tuple[asyncio.subprocess.Process, str, list[str]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkgroups.sandbox", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("Serving") for line in lines):
        raw = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
        assert raw, f"the sandbox exited early: {lines}"
        lines.append(raw.decode())
    match = re.search(r"DocSpace\s+(http://\S+)", "".join(lines))
    assert match, lines
    return proc, match.group(1), lines


async def stop_cli(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=15)
    assert not err.strip(), err.decode()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_cli_serves_and_stops_on_sigterm(tmp_path: Path):
    """The command prints its URLs, serves requests, and exits 0 on SIGTERM, dumping the state."""
    dump = tmp_path / "final.json"
    proc, base, lines = await start_cli("--dump", str(dump), "--latency-ms", "1", "--seed", "3")
    try:
        text = "".join(lines)
        assert f"Adaxes    {base}/restApi" in text
        assert "sk-test-key" in text
        assert "adm-test-token" in text
        assert "admin@example.com" in text
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "Bearer sk-test-key"}
            async with http.get(f"{base}/api/2.0/group", headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["total"] == 3
            async with http.get(f"{base}/_sandbox/log") as r:
                assert [e["status"] for e in await r.json()] == [200]
    finally:
        code, out = await stop_cli(proc)
    assert code == 0
    assert "sandbox stopped" in out
    assert len(json.loads(dump.read_text(encoding="utf-8"))["docspace"]["groups"]) == 3


async def test_cli_state_and_limits(tmp_path: Path):
    """--state serves that file (secrets masked in the banner, except the published demo
    keys: issue 15); --window-requests limits it."""
    state = tmp_path / "state.json"
    demo = Path(__file__).resolve().parent.parent / "jobs" / "demo-state.json"
    seeded = json.loads(demo.read_bytes())
    seeded["docspace"]["api_keys"]["sk-private-key"] = seeded["docspace"]["api_keys"][
        "sk-demo-key"]
    state.write_text(json.dumps(seeded), encoding="utf-8")
    proc, base, lines = await start_cli("--state", str(state), "--window-requests", "1")
    try:
        assert "sk-demo-key" in "".join(lines) and "adm-demo-token" in "".join(lines)
        assert "sk-private-key" not in "".join(lines)
        assert "sk-p…" in "".join(lines)
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "Bearer sk-demo-key"}
            statuses = []
            for _ in range(2):
                async with http.get(f"{base}/api/2.0/group", headers=headers) as r:
                    statuses.append(r.status)
            assert statuses == [200, 429]
    finally:
        code, _ = await stop_cli(proc)
    assert code == 0
