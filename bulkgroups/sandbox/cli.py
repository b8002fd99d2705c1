"""`bulkgroups sandbox`: serve the emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click
import orjson

from bulkgroups.sandbox.config import SandboxConfig
from bulkgroups.sandbox.faults import Faults
from bulkgroups.sandbox.limits import Limits
from bulkgroups.sandbox.log import token_label
from bulkgroups.sandbox.seed import make_state
from bulkgroups.sandbox.server import Sandbox
from bulkgroups.sandbox.state import StateError

RATIO = click.FloatRange(0.0, 1.0)
NON_NEGATIVE = click.FloatRange(min=0.0)


def _cap(value: int | None, default: int | None) -> int | None:
    """An option's limit: not given -> default, 0 -> off."""
    if value is None:
        return default
    return value or None


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the URLs printed show it).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="State JSON file to serve (default: a small built-in state).",
)
@click.option(
    "--dump",
    "dump_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the final state to this JSON file on exit.",
)
@click.option("--latency-ms", type=NON_NEGATIVE, default=0.0, help="Added latency per request.")
@click.option(
    "--jitter-ms",
    type=NON_NEGATIVE,
    default=0.0,
    help="Extra random latency per request, up to this many ms.",
)
@click.option(
    "--fail-503",
    type=RATIO,
    default=0.0,
    metavar="RATIO",
    help="Share of requests answered 503 (DocSpace: nginx's HTML page).",
)
@click.option(
    "--drop",
    type=RATIO,
    default=0.0,
    metavar="RATIO",
    help="Share of requests whose connection is closed unanswered, change not applied.",
)
@click.option(
    "--drop-after-apply",
    type=RATIO,
    default=0.0,
    metavar="RATIO",
    help="Share of requests applied, then closed unanswered (a lost answer).",
)
@click.option(
    "--ratelimit-429",
    type=RATIO,
    default=0.0,
    metavar="RATIO",
    help="Share of requests answered 429 with Retry-After.",
)
@click.option(
    "--retry-after-s",
    type=NON_NEGATIVE,
    default=1.0,
    show_default=True,
    help="Retry-After of the 429 fault (and of Adaxes's 503).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the fault generator (same seed, same faults).",
)
@click.option("--no-limits", is_flag=True, help="Switch off every DocSpace rate limit.")
@click.option(
    "--max-concurrent-writes",
    type=click.IntRange(min=0),
    metavar="N",
    help="DocSpace concurrent writes per credential [default: 15; 0 = off].",
)
@click.option(
    "--window-requests",
    type=click.IntRange(min=0),
    metavar="N",
    help="DocSpace requests per 60 s sliding window [default: 1500; 0 = off].",
)
@click.option(
    "--daily-writes",
    type=click.IntRange(min=0),
    metavar="N",
    help="DocSpace POST+PUT requests a day [default: 10000; 0 = off].",
)
@click.option(
    "--token-ttl-s",
    type=click.FloatRange(min=0.0, min_open=True),
    default=1800.0,
    show_default=True,
    help="Lifetime of signed-in tokens, in seconds.",
)
def sandbox_command(
    host: str,
    port: int,
    state_path: Path | None,
    dump_path: Path | None,
    latency_ms: float,
    jitter_ms: float,
    fail_503: float,
    drop: float,
    drop_after_apply: float,
    ratelimit_429: float,
    retry_after_s: float,
    seed: int,
    no_limits: bool,
    max_concurrent_writes: int | None,
    window_requests: int | None,
    daily_writes: int | None,
    token_ttl_s: float,
) -> None:
    """Serve a local emulator of the DocSpace and Adaxes group APIs."""
    limits = Limits.off() if no_limits else Limits()
    limits.max_concurrent_writes = _cap(max_concurrent_writes, limits.max_concurrent_writes)
    limits.window_requests = _cap(window_requests, limits.window_requests)
    limits.daily_writes = _cap(daily_writes, limits.daily_writes)
    faults = Faults(
        seed=seed,
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        error_503_ratio=fail_503,
        drop_ratio=drop,
        drop_after_apply_ratio=drop_after_apply,
        ratelimit_429_ratio=ratelimit_429,
        retry_after_s=retry_after_s,
    )
    config = SandboxConfig(limits=limits, faults=faults, token_ttl_s=token_ttl_s)
    built_in = state_path is None
    try:
        sandbox = Sandbox(
            make_state(docspace_members=20, adaxes_members=20, guests=2, terminated=2)
            if state_path is None
            else state_path,
            config=config,
            host=host,
            port=port,
        )
    except StateError as exc:
        raise click.BadParameter(str(exc), param_hint="--state") from None
    try:
        asyncio.run(_serve(sandbox, built_in))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if dump_path is not None:
        dump_path.write_bytes(orjson.dumps(sandbox.dump(), option=orjson.OPT_INDENT_2) + b"\n")
        click.echo(f"state written to {dump_path}")


async def _serve(sandbox: Sandbox, built_in: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with sandbox:
            _announce(sandbox, built_in)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    click.echo("sandbox stopped")


def _announce(sandbox: Sandbox, built_in: bool) -> None:
    """Print the URLs and credentials; secrets in full only for the built-in test state."""
    state = sandbox.dump()
    show = (lambda s: s) if built_in else token_label
    ds, ax = state["docspace"], state["adaxes"]
    keys = ", ".join(show(k) for k in ds["api_keys"]) or "none"
    tokens = ", ".join(show(t) for t in ax["tokens"]) or "none"
    click.echo(f"DocSpace  {sandbox.base_url}")
    click.echo(f"  API keys (Authorization: Bearer KEY): {keys}")
    click.echo(f"  accounts (POST /api/2.0/authentication): {', '.join(ds['accounts']) or 'none'}")
    click.echo(f"Adaxes    {sandbox.adaxes_url}")
    click.echo(f"  tokens (Adm-Authorization: TOKEN): {tokens}")
    click.echo(f"  accounts (POST /api/authSessions/create): {', '.join(ax['accounts']) or 'none'}")
    if built_in:
        click.echo("  password of every built-in account: test-password")
    click.echo(
        "Control   GET /_sandbox/log, GET /_sandbox/state, POST /_sandbox/inject,"
        " POST /_sandbox/tenant"
    )
    click.echo("Serving until Ctrl+C or SIGTERM.", nl=True)
