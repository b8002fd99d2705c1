"""Secrets and what reaches the wire: the token in no output, file or process title; results
readable by their owner only; a warning for a token file others can read; TLS verified
(a private CA only through ca_file); input ids never steer a request's path or query."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from bulkgroups.job import Credentials, JobError, load_credentials, load_job
from bulkgroups.model import Op, Row, Status, TargetKind
from bulkgroups.sandbox import Faults, Sandbox, SandboxConfig, make_state
from bulkgroups.secret import Secret
from bulkgroups.targets.connect import make_target
from tests.support import Done, cli_env, fast_transport, finish, last_outcomes, write_job

# Distinctive enough that any 12 characters of it in an output can only be a leak.
SECRET = "Zq8vKT3mWn5xR7pL2cYb9hJd4fGs6"
DS_SECRET = f"sk-{SECRET}"
AX_SECRET = f"adm-{SECRET}"
OWNER_ONLY = 0o600


def state_with_secret(**kwargs: Any) -> dict[str, Any]:
    """make_state(), with the distinctive token accepted by both APIs."""
    state = make_state(**kwargs)
    state["docspace"]["api_keys"] = {DS_SECRET: ["accounts:read", "accounts:write"]}
    state["adaxes"]["tokens"] = [AX_SECRET]
    return state


def leaks(text: str) -> list[str]:
    """Every 12-character piece of the secret found in `text`."""
    return sorted({SECRET[i : i + 12] for i in range(len(SECRET) - 11)
                   if SECRET[i : i + 12] in text})


async def start(*args: str, token: str, cwd: Path | None = None) -> asyncio.subprocess.Process:
    """`bulkgroups ARGS` with umask 0, so only the modes the code asks for protect a file."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkgroups", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=cli_env(token), cwd=cwd, umask=0,
    )


async def cli(*args: str, token: str = DS_SECRET) -> Done:
    return await finish(await start(*args, token=token))


def everything_written(folder: Path, done: list[Done]) -> dict[str, str]:
    """Each output stream and every file under `folder`, by name."""
    texts = {f"stdout {i}": d.stdout for i, d in enumerate(done)}
    texts |= {f"stderr {i}": d.stderr for i, d in enumerate(done)}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    return texts


def members_of_first(sb: Sandbox) -> tuple[str, list[str]]:
    groups = sb.dump()["docspace"]["groups"]
    g0 = next(iter(groups))
    return g0, sorted(groups[g0]["members"])


# -- the token in no output ---------------------------------------------------------------------


async def _run_and_report(tmp_path: Path, job: Path, token: str) -> list[Done]:
    """The run, then every command that reads its results: all their output is checked."""
    done = [await cli("run", str(job), token=token)]
    results = tmp_path / "results.jsonl"
    if results.exists():
        done.append(await cli("report", str(results), "--json", token=token))
        done.append(await cli("report", str(results), "--html", str(tmp_path / "r.html"),
                              "--failed-csv", str(tmp_path / "failed.csv"), token=token))
        done.append(await cli("undo", str(results), "-o", str(tmp_path / "undo.csv"),
                              token=token))
    return done


@pytest.mark.parametrize(
    ("scenario", "exit_code"),
    [("accepted", 0), ("accepted-adaxes", 0), ("token-file", 0), ("refused", 3),
     ("dropped", 1), ("unreachable", 1)],
)
async def test_token_appears_in_nothing_a_run_produces(
    tmp_path: Path, scenario: str, exit_code: int
) -> None:
    """Whatever happens to the run, no piece of the token is in stdout, stderr, the results,
    the metadata or the lock; nor, for the accepted run, in anything report and undo print
    or write from them."""
    faults = Faults(drop_ratio=1.0, seed=1) if scenario == "dropped" else Faults()
    async with Sandbox(state_with_secret(), config=SandboxConfig(faults=faults)) as sb:
        kind = "adaxes" if scenario == "accepted-adaxes" else "docspace"
        if kind == "docspace":
            g0, members = members_of_first(sb)
            rows = [{"op": "remove", "group": g0, "member": m} for m in members[:4]]
        else:
            objects = sb.dump()["adaxes"]["objects"]
            g0 = next(dn for dn, o in objects.items() if o["type"] == "group")
            rows = [{"op": "remove", "group": g0, "member": m}
                    for m in sorted(objects[g0]["members"])[:4]]
        job = write_job(tmp_path, sb, kind=kind, rows=rows, limits={"max_retries": 1})
        token = AX_SECRET if kind == "adaxes" else DS_SECRET
        if scenario == "refused":
            token = f"sk-{SECRET[::-1]}"
        if scenario == "token-file":
            (tmp_path / "tok").write_text(token + "\n", encoding="utf-8")
            os.chmod(tmp_path / "tok", OWNER_ONLY)
            text = job.read_text(encoding="utf-8")
            job.write_text(text.replace('token_env = "BG_TEST_TOKEN"', 'token_file = "tok"'),
                           encoding="utf-8")
        if scenario == "unreachable":
            text = job.read_text(encoding="utf-8")
            job.write_text(text.replace(sb.base_url, "http://127.0.0.1:9"), encoding="utf-8")
        if scenario == "accepted":
            done = await _run_and_report(tmp_path, job, token)
        else:
            # report and undo read only the results, which the accepted run checks for them.
            done = [await cli("run", str(job), token=token)]
    assert done[0].code == exit_code, done[0].stderr
    if scenario == "token-file":
        (tmp_path / "tok").unlink()  # the one file that is meant to hold it
    found = {name: leaks(text) for name, text in everything_written(tmp_path, done).items()}
    assert {name: pieces for name, pieces in found.items() if pieces} == {}
    if exit_code == 0:
        assert {o["status"] for o in last_outcomes(tmp_path / "results.jsonl").values()} == {"ok"}


async def test_token_is_not_in_the_process_title(tmp_path: Path) -> None:
    """While the run is sending, its command line and name hold no piece of the token."""
    config = SandboxConfig(faults=Faults(latency_ms=150))
    async with Sandbox(state_with_secret(), config=config) as sb:
        g0, members = members_of_first(sb)
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:6]]
        job = write_job(tmp_path, sb, rows=rows, limits={"concurrency": 1, "precheck": False})
        proc = await start("run", str(job), "--quiet", token=DS_SECRET)
        await sb.wait_for_requests(1)
        title = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        comm = Path(f"/proc/{proc.pid}/comm").read_text()
        done = await finish(proc)
    assert done.code == 0, done.stderr
    assert "bulkgroups" in title  # it was the run, still going
    assert leaks(title) == [] and leaks(comm) == []


def test_secret_hides_in_every_text_form() -> None:
    """repr, str, format and the Credentials repr show a placeholder, never the value."""
    secret = Secret(DS_SECRET)
    creds = Credentials(token=secret, username="admin", password=Secret(SECRET))
    for text in (repr(secret), str(secret), f"{secret}", "%s" % secret, repr(creds),  # noqa: UP031
                 str([secret]), str({"token": secret})):
        assert leaks(text) == [], text


# -- files readable by their owner only -----------------------------------------------------


async def test_results_metadata_and_written_inputs_are_owner_only(tmp_path: Path) -> None:
    """Under umask 0, the results, metadata, lock, failed-rows CSV and undo file are 0600."""
    async with Sandbox(state_with_secret()) as sb:
        g0, members = members_of_first(sb)
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:3]]
        rows.append({"op": "remove", "group": "00000000-0000-4000-8000-0000000000ff",
                     "member": members[3]})  # fails: a row for --failed-csv
        job = write_job(tmp_path, sb, rows=rows)
        done = await _run_and_report(tmp_path, job, DS_SECRET)
    assert [d.code for d in done] == [1, 0, 0, 0], [d.stderr for d in done]
    written = ["results.jsonl", "results.meta.json", "failed.csv", "undo.csv"]
    modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in written}
    assert modes == dict.fromkeys(written, OWNER_ONLY)
    # The lock file is gone once the run ends (issue 15); its mode while held is 0600:
    # test_resume_index.test_lock_files_are_owner_only_while_held.
    assert not (tmp_path / "results.jsonl.lock").exists()


# -- a token file others can read ---------------------------------------------------------------


def _token_file_job(folder: Path, mode: int, *, base_url: str = "http://127.0.0.1:1") -> Path:
    (folder / "in.csv").write_text("op,group,member\n", encoding="utf-8")
    (folder / "tok").write_text(DS_SECRET + "\n", encoding="utf-8")
    os.chmod(folder / "tok", mode)
    job = folder / "job.toml"
    job.write_text(
        f'[job]\nname = "t"\n[target]\nkind = "docspace"\nbase_url = "{base_url}"\n'
        'token_file = "tok"\n[input]\npath = "in.csv"\n[output]\nresults = "results.jsonl"\n',
        encoding="utf-8",
    )
    return job


@pytest.mark.parametrize(
    ("mode", "who"),
    [(0o644, "its group and others"), (0o640, "its group"), (0o604, "others"),
     (0o660, "its group"), (0o600, None), (0o400, None)],
)
def test_token_file_open_to_others_is_warned_about(tmp_path: Path, mode: int, who: str | None
                                                  ) -> None:
    """A token file with group or other permissions is used, with a warning that names the
    file, its mode and `chmod 600`, and not the token; a private file gets none."""
    job = load_job(_token_file_job(tmp_path, mode))
    warnings: list[str] = []
    creds = load_credentials(job, environ={}, warn=warnings.append)
    assert creds.token == Secret(DS_SECRET)
    if who is None:
        assert warnings == []
        return
    path = tmp_path / "tok"
    assert warnings == [
        f"token_file {path} is open to {who} (mode {mode:03o}): anyone who can read it can "
        f"act as this token; chmod 600 {path}"
    ]
    assert leaks(warnings[0]) == []


async def test_cli_warns_on_stderr_about_a_readable_token_file(tmp_path: Path) -> None:
    """The run prints the warning on stderr, goes on, and shows no piece of the token."""
    async with Sandbox(state_with_secret()) as sb:
        job = _token_file_job(tmp_path, 0o644, base_url=sb.base_url)
        done = await cli("run", str(job), token="unused")
    assert done.code == 0, done.stderr
    assert f"bulkgroups: warning: token_file {tmp_path / 'tok'} is open to" in done.stderr
    assert f"chmod 600 {tmp_path / 'tok'}" in done.stderr
    assert leaks(done.stdout + done.stderr) == []


def test_token_file_errors_do_not_show_the_token(tmp_path: Path) -> None:
    """A token file with two lines is refused naming the file, never its content."""
    job = load_job(_token_file_job(tmp_path, OWNER_ONLY))
    (tmp_path / "tok").write_text(f"{DS_SECRET}\n{DS_SECRET}\n", encoding="utf-8")
    with pytest.raises(JobError) as info:
        load_credentials(job, environ={})
    assert str(tmp_path / "tok") in str(info.value)
    assert leaks(str(info.value)) == []


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl now."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a test certificate (and `cryptography` is not a "
                    "dependency)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=bulkgroups test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@contextlib.asynccontextmanager
async def tls_front(sb: Sandbox, cert: Path, key: Path) -> AsyncIterator[str]:
    """An HTTPS front for the sandbox on loopback (TLS in, plain HTTP on to the sandbox);
    yields its https:// base URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tasks: set[asyncio.Future[Any]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", sb.port)
        both = asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        tasks.add(both)
        await both

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_https_is_verified_and_ca_file_trusts_a_private_ca(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    """https:// with a self-signed certificate: without ca_file the run stops at once (exit 3)
    naming ca_file, no row is failed and nothing reaches the server; with ca_file naming that
    certificate the same job runs and every row is ok."""
    cert, key = self_signed
    async with Sandbox(state_with_secret()) as sb, tls_front(sb, cert, key) as https_url:
        g0, members = members_of_first(sb)
        rows = [{"op": "remove", "group": g0, "member": m} for m in members[:3]]
        job = write_job(tmp_path, sb, rows=rows)
        text = job.read_text(encoding="utf-8").replace(sb.base_url, https_url)
        job.write_text(text, encoding="utf-8")
        refused = await cli("run", str(job), "--results", str(tmp_path / "refused.jsonl"))
        assert refused.code == 3, refused.stderr
        assert "certificate" in refused.stderr and "ca_file" in refused.stderr
        assert sb.log == []
        assert last_outcomes(tmp_path / "refused.jsonl") == {}
        job.write_text(text.replace("[input]", f'ca_file = "{cert}"\n[input]'),
                       encoding="utf-8")
        trusted = await cli("run", str(job), "--results", str(tmp_path / "trusted.jsonl"))
        assert trusted.code == 0, trusted.stderr
        ok = last_outcomes(tmp_path / "trusted.jsonl")
        assert [o["status"] for _, o in sorted(ok.items())] == ["ok"] * 3
        assert members_of_first(sb)[1] == members[3:]
    assert leaks(refused.stdout + refused.stderr + trusted.stdout + trusted.stderr) == []


# -- input values never steer a request ---------------------------------------------------------

HOSTILE_IDS = [
    "../../admin", "..%2F..%2Fadmin", "a/b", "x?admin=1", "x#frag", "%3Fq=1", "a;b=c",
    "\\..\\..\\admin", "ü b", "%00", "..\u2215..",
]


@pytest.mark.parametrize("value", HOSTILE_IDS)
async def test_docspace_ids_stay_one_path_segment(value: str) -> None:
    """A raw Row (no reader to refuse it) with a hostile id as group and as to_group: each
    request's path is the route with the id as one segment, exactly; the query stays empty;
    nothing changes."""
    async with Sandbox(state_with_secret()) as sb, aiohttp.ClientSession() as session:
        g0, members = members_of_first(sb)
        before = sb.dump()["docspace"]["groups"]
        transport = fast_transport(sb, session, token=DS_SECRET, retries=0)
        checked = make_target(TargetKind.DOCSPACE, transport, precheck=True)
        blind = make_target(TargetKind.DOCSPACE, transport, precheck=False)
        results = [
            await checked.apply(Row(1, 2, Op.REMOVE, value, members[0])),
            await blind.apply(Row(2, 3, Op.REMOVE, value, members[0])),
            await blind.apply(Row(3, 4, Op.MOVE_ALL, g0, "", value)),
        ]
        seen = [(e.method, e.path, e.query) for e in sb.log]
        assert sb.dump()["docspace"]["groups"] == before
    assert all(r.status is Status.FAILED for r in results), results
    group = "/api/2.0/group/"
    assert seen[:2] == [("GET", group + value, ""), ("DELETE", group + value + "/members", "")]
    # move_all reads the group, then puts its members into the hostile to_group.
    allowed = {group + g0, group + value, f"{group}{g0}/members/{value}"}
    assert all(path in allowed and query == "" for _, path, query in seen[2:]), seen


@pytest.mark.parametrize("value", [".", "..", "...", ""])
async def test_docspace_dot_segments_are_never_sent(value: str) -> None:
    """An id of dots would be resolved away by the URL library: refused before the network."""
    async with Sandbox(state_with_secret()) as sb, aiohttp.ClientSession() as session:
        _, members = members_of_first(sb)
        target = make_target(TargetKind.DOCSPACE,
                             fast_transport(sb, session, token=DS_SECRET, retries=0),
                             precheck=False)
        result = await target.apply(Row(1, 2, Op.REMOVE, value, members[0]))
        assert sb.log == []
    assert (result.status, result.attempts) == (Status.FAILED, 0)


ADAXES_HOSTILE = [
    "CN=x&member=CN=Admin,DC=example,DC=com", "CN=a#b,DC=x", "CN=a?b,DC=x",
    "CN=a+b=c,DC=x", "CN=a%26member%3Dx,DC=x", "CN=..\\/..,DC=x", "CN=a;b,DC=x",
]


@pytest.mark.parametrize("value", ADAXES_HOSTILE)
async def test_adaxes_ids_stay_inside_their_query_parameter(value: str) -> None:
    """A hostile group id in an Adaxes removal: the path is the fixed endpoint, and the query
    decodes to exactly the group and member sent, no parameter more."""
    async with Sandbox(state_with_secret()) as sb, aiohttp.ClientSession() as session:
        objects = sb.dump()["adaxes"]["objects"]
        g0 = next(dn for dn, o in objects.items() if o["type"] == "group")
        member = sorted(objects[g0]["members"])[0]
        transport = fast_transport(sb, session, kind=TargetKind.ADAXES, token=AX_SECRET,
                                   retries=0)
        target = make_target(TargetKind.ADAXES, transport, precheck=False)
        await target.apply(Row(1, 2, Op.REMOVE, value, member))
        await target.apply(Row(2, 3, Op.REMOVE, g0, value))
        entries = [e for e in sb.log if e.method == "DELETE"]
        assert set(objects[g0]["members"]) == set(sb.dump()["adaxes"]["objects"][g0]["members"])
    assert [e.path for e in entries] == ["/restApi/api/directoryObjects/groupMembers"] * 2
    queries = [parse_qs(e.query, keep_blank_values=True) for e in entries]
    assert queries == [{"group": [value], "member": [member]}, {"group": [g0], "member": [value]}]
