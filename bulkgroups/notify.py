"""`[notify] webhook_env = "VAR"`: post the run's summary where a person will see it.

The URL comes from the environment variable the job names, because a webhook URL is a
credential (anyone holding a Slack incoming-webhook URL can post to the channel): it is never
printed, not even in an error. The body is JSON with a Slack-compatible `text` plus the
figures for other receivers (Teams/Mattermost/Rocket.Chat read `text` as well). The token is
never in it. A notification that cannot be delivered is a warning, never another exit status.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson

from bulkgroups.finish import RunEnd

ATTEMPTS: Final = 3
TIMEOUT_S: Final = 5.0  # per attempt: a hung receiver delays the run's exit by ~15 s at most
BACKOFF_S: Final = (0.5, 2.0)  # before the 2nd and 3rd attempts
_RETRY_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})

_EXITS: Final = {
    0: "done",
    1: "done, some rows failed, were invalid or went stale",
    2: "did not start: job-file or usage error",
    3: "refused or aborted",
    130: "interrupted (SIGINT)",
    143: "terminated (SIGTERM)",
}


def summary_text(end: RunEnd) -> str:
    """One message a person reads on a phone: what happened, the figures, what to do."""
    what = _EXITS.get(end.code, f"exit {end.code}")
    head = f"bulkgroups {end.job}: {what} (exit {end.code})"
    if end.stopped:
        head += f": {end.stopped}"
    figures = ", ".join(f"{k} {v:,}" for k, v in end.counts.items() if v)
    if end.not_reached:
        figures += (", " if figures else "") + f"not reached {end.not_reached:,}"
    lines = [head, figures or "no rows finished", f"results: {end.results}"]
    if end.failed or end.not_reached:
        lines.append(f"next: bulkgroups resume {end.results}")
    elif end.code == 2:
        lines.append("next: fix the job file or its environment, then run it again")
    return "\n".join(lines)


def payload(end: RunEnd) -> dict[str, Any]:
    return {"text": summary_text(end), "host": socket.gethostname(), **end.to_json()}


def _url_problem(url: str) -> str | None:
    """Why the URL cannot be used, in words that do not repeat it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it is not a URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return None
        except ValueError:
            if parts.hostname == "localhost":
                return None
        return "plain http:// is accepted only to a loopback address; use https://"
    return "it must be an https:// URL"


async def notify(
    env_name: str,
    end: RunEnd,
    *,
    environ: Mapping[str, str],
    warn: Callable[[str], None],
    attempts: int = ATTEMPTS,
    timeout_s: float = TIMEOUT_S,
    backoff_s: tuple[float, ...] = BACKOFF_S,
) -> bool:
    """Post the summary; True when the receiver answered 2xx. Never raises."""
    url = (environ.get(env_name) or "").strip()
    where = f"the webhook in ${env_name}"
    if not url:
        warn(f"no notification sent: environment variable {env_name} is not set")
        return False
    problem = _url_problem(url)
    if problem is not None:
        warn(f"no notification sent: {where}: {problem}")
        return False
    body = orjson.dumps(payload(end))
    last = "no attempt"
    attempt = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(backoff_s[min(attempt, len(backoff_s)) - 1])
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"},
                        allow_redirects=False,
                    ) as resp:
                        await resp.read()
                        if 200 <= resp.status < 300:
                            return True
                        last = f"HTTP {resp.status}"
                        if resp.status not in _RETRY_STATUS:
                            break
                except TimeoutError:
                    last = f"no answer within {timeout_s:g} s"
                except aiohttp.ClientError as exc:
                    # The exception's text names the URL: only its kind is shown.
                    last = f"{type(exc).__name__}"
    except Exception as exc:  # never let a notification change the run's end
        last = type(exc).__name__
    warn(f"notification not delivered to {where} after {attempt + 1} attempt(s): {last}")
    return False
