"""Helpers for end-to-end tests: write a job for a running sandbox, run the real CLI in a
subprocess (so signals and exit codes are real), read the results back."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bulkgroups.http.auth import auth_for
from bulkgroups.http.pacer import Pacer
from bulkgroups.http.policy import RetryPolicy
from bulkgroups.http.transport import Transport
from bulkgroups.model import TargetKind
from bulkgroups.sandbox import Sandbox
from bulkgroups.secret import Secret

DS_TOKEN = "sk-test-key"
AX_TOKEN = "adm-test-token"


def write_job(
    folder: Path,
    sb: Sandbox,
    *,
    kind: str = "docspace",
    rows: Iterable[Mapping[str, str]] = (),
    fmt: str = "csv",
    limits: Mapping[str, Any] | None = None,
    safety: Mapping[str, Any] | None = None,
    name: str = "t",
    signin: bool = False,
    target: Mapping[str, Any] | None = None,
) -> Path:
    """A job file and its input in `folder`, pointed at the running sandbox. `signin`: the
    credential is username_env + password_env (BG_TEST_USER, BG_TEST_PASSWORD: see
    `signin_env`) instead of token_env; `target`: more [target] keys."""
    data = folder / f"input.{fmt}"
    if fmt == "csv":
        with open(data, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["op", "group", "member", "to_group"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        data.write_bytes(b"".join(orjson.dumps(dict(r)) + b"\n" for r in rows))
    base = sb.base_url if kind == "docspace" else sb.adaxes_url
    credential = (
        ['username_env = "BG_TEST_USER"', 'password_env = "BG_TEST_PASSWORD"'] if signin
        else ['token_env = "BG_TEST_TOKEN"']
    )
    lines = [
        "[job]", f'name = "{name}"', "[target]", f'kind = "{kind}"', f'base_url = "{base}"',
        *credential, *(f"{k} = {_toml(v)}" for k, v in (target or {}).items()),
        "[input]", f'path = "{data.name}"',
        "[output]", 'results = "results.jsonl"', "[limits]",
    ]
    # One request per row unless a test is about batching.
    merged = {"rate": 1000, "concurrency": 10, "timeout_s": 5, "batch_size": 1, **(limits or {})}
    lines += [f"{k} = {_toml(v)}" for k, v in merged.items()]
    # The group guard is off unless a test is about it: most tests empty groups on purpose.
    merged_safety = {"max_group_removal": 1.0, **(safety or {})}
    lines.append("[safety]")
    lines += [f"{k} = {_toml(v)}" for k, v in merged_safety.items()]
    job = folder / "job.toml"
    job.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return job


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


def cli_env(token: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BG_")}
    env["BG_TEST_TOKEN"] = token
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def signin_env(username: str, password: str) -> dict[str, str]:
    """The variables a `write_job(signin=True)` job reads its user name and password from."""
    return {"BG_TEST_USER": username, "BG_TEST_PASSWORD": password}


async def start_cli(*args: str, token: str = DS_TOKEN, cwd: Path | None = None,
                    env: Mapping[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkgroups", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=cli_env(token, env), cwd=cwd,
    )


async def finish(proc: asyncio.subprocess.Process, *, timeout_s: float = 60) -> Done:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        # A child left running would outlive the test and disturb the next one.
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


async def run_cli(*args: str, token: str = DS_TOKEN, timeout_s: float = 60,
                  env: Mapping[str, str] | None = None) -> Done:
    """Run `bulkgroups ARGS` to the end while this loop keeps serving the sandbox."""
    return await finish(await start_cli(*args, token=token, env=env), timeout_s=timeout_s)


def results_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def last_outcomes(path: Path) -> dict[int, dict[str, Any]]:
    """Each row's last line: its outcome."""
    out: dict[int, dict[str, Any]] = {}
    for line in path.read_bytes().splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        out[obj["row"]] = obj
    return out




def fast_transport(
    sb: Sandbox,
    session: aiohttp.ClientSession,
    *,
    kind: TargetKind = TargetKind.DOCSPACE,
    token: str | None = None,
    retries: int = 3,
    concurrency: int = 8,
) -> Transport:
    """A transport as the tool builds one, with retries quick enough for tests."""
    if token is None:
        token = "sk-test-key" if kind is TargetKind.DOCSPACE else "adm-test-token"
    return Transport(
        session,
        base_url=sb.base_url if kind is TargetKind.DOCSPACE else sb.adaxes_url,
        auth=auth_for(kind, Secret(token)),
        pacer=Pacer(rate=1000.0, concurrency=concurrency),
        policy=RetryPolicy(max_retries=retries, base_s=0.01, cap_s=0.05),
        timeout_s=5.0,
    )
