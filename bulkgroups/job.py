"""The job file: read with tomllib and checked completely before any request is sent."""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import stat
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import orjson

from bulkgroups.display import shown
from bulkgroups.export.select import MemberKind, Selection, parse_where, selection_problem
from bulkgroups.identity import id_problem, norm_id
from bulkgroups.model import Op, TargetKind
from bulkgroups.rows.readers import detect_format
from bulkgroups.secret import Secret

_DEFAULT_RESULTS = "results/{job}-{date}-{time}.jsonl"


class JobError(Exception):
    """A job file that cannot be run; says which file, which key and what is wrong."""

    def __init__(self, path: Path, key: str | None, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        where = f"{key}: " if key else ""
        super().__init__(f"{shown(path)}: {where}{message}")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    kind: TargetKind
    base_url: str  # "" when sandbox = true and none given; never a trailing slash
    token_env: str | None = None
    token_file: Path | None = None
    username_env: str | None = None
    password_env: str | None = None
    sandbox: bool = False
    sandbox_state: Path | None = None
    allow_insecure_http: bool = False
    ca_file: Path | None = None
    adm_wait_s: int | None = None


@dataclass(frozen=True, slots=True)
class InputSpec:
    # With `select`, `path` names no file until a run exports its rows (bulkgroups.export
    # points it at them); reading it before that fails loudly ("no such file").
    path: Path
    format: Literal["csv", "jsonl"]
    op: Op | None = None
    select: Selection | None = None


@dataclass(frozen=True, slots=True)
class OutputSpec:
    results: str = _DEFAULT_RESULTS
    keep: int | None = None
    metrics: Path | None = None  # Prometheus textfile, written at the end of every run


@dataclass(frozen=True, slots=True)
class NotifySpec:
    webhook_env: str | None = None  # the variable holding the webhook URL (a secret too)


@dataclass(frozen=True, slots=True)
class Limits:
    rate: float = 20.0
    concurrency: int = 10
    max_retries: int = 5
    timeout_s: float = 30.0
    batch_size: int = 50
    precheck: bool = True


@dataclass(frozen=True, slots=True)
class Safety:
    max_changes: int = 5000
    protected: frozenset[str] = frozenset()  # each one norm_id'd
    abort_failure_ratio: float = 0.5
    abort_min_rows: int = 100
    # Share of a group's members one run may remove (groups of at least min_group_size).
    max_group_removal: float = 0.5
    min_group_size: int = 10
    require_approval: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    path: Path  # absolute, so that a resume from another folder finds it again
    name: str
    target: TargetSpec
    input: InputSpec
    output: OutputSpec
    limits: Limits
    safety: Safety
    notify: NotifySpec = NotifySpec()


@dataclass(frozen=True, slots=True)
class Credentials:
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    # What the caller should tell the user (a token file others can read); never a secret.
    warnings: tuple[str, ...] = field(default=(), compare=False)


_TABLES: dict[str, frozenset[str]] = {
    "job": frozenset({"name"}),
    "target": frozenset(
        {
            "kind",
            "base_url",
            "token_env",
            "token_file",
            "username_env",
            "password_env",
            "sandbox",
            "sandbox_state",
            "allow_insecure_http",
            "ca_file",
            "adm_wait_s",
        }
    ),
    "input": frozenset({"path", "format", "op", "select"}),
    "output": frozenset({"results", "keep", "metrics"}),
    "notify": frozenset({"webhook_env"}),
    "limits": frozenset(
        {
            "rate",
            "concurrency",
            "max_retries",
            "timeout_s",
            "batch_size",
            "precheck",
        }
    ),
    "safety": frozenset({"max_changes", "protected", "abort_failure_ratio", "abort_min_rows",
                         "max_group_removal", "min_group_size", "require_approval"}),
}
_REQUIRED_TABLES = ("job", "target", "input")

# Keys people reach for when pasting a credential; each gets a pointer to the right key
# instead of "unknown key" (and the value is never echoed).
_SECRET_KEYS: dict[str, str] = {
    "token": "token_env or token_file",
    "api_key": "token_env or token_file",
    "apikey": "token_env or token_file",
    "api_token": "token_env or token_file",
    "access_token": "token_env or token_file",
    "password": "password_env",
    "secret": "token_env or token_file",
}

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEMPLATE_FIELDS = frozenset({"job", "date", "time"})
_OPS = ", ".join(op.value for op in Op)
_MAX_RATE = 10000.0
_D = TypeVar("_D", int, None)


def load_job(path: Path) -> Job:
    """Read and check a job file; every problem is a JobError naming the file and key."""
    doc = _read_toml(path)
    _check_tables(path, doc)
    checker = _Checker(path, path.absolute().parent)
    tables = {name: checker.table(name, doc.get(name, {})) for name in _TABLES}
    target = _target(tables["target"])
    return Job(
        path=path.absolute(),
        name=_job_name(tables["job"]),
        target=target,
        input=_input(tables["input"], target.kind),
        output=_output(tables["output"]),
        limits=_limits(tables["limits"]),
        safety=_safety(tables["safety"], target.kind),
        notify=NotifySpec(webhook_env=tables["notify"].get_env_name("webhook_env")),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise JobError(path, None, "no such file") from None
    except OSError as exc:
        raise JobError(path, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise JobError(path, None, "not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line N, column M)".
        raise JobError(path, None, f"invalid TOML: {exc}") from None


def _check_tables(path: Path, doc: dict[str, Any]) -> None:
    """Only known tables at the top, each a table, the required ones there, no secret."""
    for key, value in doc.items():
        if key.lower() in _SECRET_KEYS:
            raise _secret_error(path, key)
        if key not in _TABLES:
            if isinstance(value, dict):
                raise JobError(path, f"[{key}]", "unknown table" + _hint(key, _TABLES))
            raise JobError(path, key, "unknown top-level key; keys belong in a table such as [job]")
        if not isinstance(value, dict):
            raise JobError(path, f"[{key}]", "must be a table")
    for name in _REQUIRED_TABLES:
        if name not in doc:
            raise JobError(path, f"[{name}]", "missing table")


def results_path(job: Job, *, now: datetime, override: Path | None = None) -> Path:
    """Where this run's results go: `override` (a CLI path, relative to the current folder)
    or the job's template filled in, relative to the job file's folder."""
    if override is not None:
        return override
    name = job.output.results.format(
        job=job.name, date=now.strftime("%Y-%m-%d"), time=now.strftime("%H%M%S")
    )
    return job.path.parent / name


def with_limits(job: Job, *, rate: float | None = None, concurrency: int | None = None) -> Job:
    """The job with command-line overrides applied, checked like the job file's values."""
    fields: dict[str, Any] = {}
    if rate is not None:
        fields["rate"] = _check_number(job.path, "--rate", rate, above=0.0, at_most=_MAX_RATE)
    if concurrency is not None:
        fields["concurrency"] = _check_int(job.path, "--concurrency", concurrency, 1, 1000)
    if not fields:
        return job
    return replace(job, limits=replace(job.limits, **fields))


def load_credentials(
    job: Job, *, environ: Mapping[str, str], warn: Callable[[str], None] | None = None
) -> Credentials:
    """The secrets the job names, from the environment or a file. Messages name the
    variable or file, never a value. A token file that other users can read or change is
    used, with a warning in the result's `warnings` (and through `warn`, when given)."""
    t = job.target
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    warnings: list[str] = []
    if t.token_env is not None:
        token = Secret(_from_env(job, "token_env", t.token_env, environ))
    if t.token_file is not None:
        token = Secret(_from_file(job, t.token_file))
        problem = _open_to_others(t.token_file)
        if problem is not None:
            warnings.append(problem)
            if warn is not None:
                warn(problem)
    if t.username_env is not None:
        username = _from_env(job, "username_env", t.username_env, environ)
    if t.password_env is not None:
        # A password may legitimately start or end with a space: take it as it is.
        password = Secret(_from_env(job, "password_env", t.password_env, environ, strip=False))
    return Credentials(token=token, username=username, password=password,
                       warnings=tuple(warnings))


# --- tables ---------------------------------------------------------------------------


def _job_name(t: _Table) -> str:
    name = t.require_str("name")
    if _NAME_RE.fullmatch(name) is None or set(name) == {"."}:
        t.fail("name", "must be 1 to 100 letters, digits, '-', '_' or '.' (it names files)")
    return name


def _target(t: _Table) -> TargetSpec:
    kind_s = t.require_str("kind")
    try:
        kind = TargetKind(kind_s)
    except ValueError:
        t.fail("kind", 'must be "docspace" or "adaxes"')
    sandbox = t.get_bool("sandbox", False)
    insecure = t.get_bool("allow_insecure_http", False)
    url = t.get_str("base_url", required=not sandbox)
    base_url = "" if url is None else _base_url(t, url, allow_insecure_http=insecure)

    token_env = t.get_env_name("token_env")
    token_file = t.get_path("token_file")
    username_env = t.get_env_name("username_env")
    password_env = t.get_env_name("password_env")
    if (username_env is None) != (password_env is None):
        t.fail(
            "username_env" if username_env is None else "password_env",
            "username_env and password_env go together",
        )
    sources = [
        name
        for name, present in (
            ("token_env", token_env is not None),
            ("token_file", token_file is not None),
            ("username_env + password_env", username_env is not None),
        )
        if present
    ]
    if len(sources) > 1:
        t.fail(None, "name exactly one credential source, found " + " and ".join(sources))
    if not sources and not sandbox:
        t.fail(
            None,
            "name a credential source: token_env, token_file, or username_env + password_env",
        )

    sandbox_state = t.get_path("sandbox_state", must_exist=True)
    if sandbox_state is not None and not sandbox:
        t.fail("sandbox_state", "only with sandbox = true")
    if sandbox_state is not None:
        load_sandbox_state(sandbox_state, job=t.path_, key=t.key("sandbox_state"))
    adm_wait_s = t.get_int("adm_wait_s", None, 0, 3600)
    if adm_wait_s is not None and kind is not TargetKind.ADAXES:
        t.fail("adm_wait_s", 'only with kind = "adaxes"')
    return TargetSpec(
        kind=kind,
        base_url=base_url,
        token_env=token_env,
        token_file=token_file,
        username_env=username_env,
        password_env=password_env,
        sandbox=sandbox,
        sandbox_state=sandbox_state,
        allow_insecure_http=insecure,
        ca_file=t.get_path("ca_file", must_exist=True),
        adm_wait_s=adm_wait_s,
    )


def load_sandbox_state(path: Path, *, job: Path, key: str = "[target] sandbox_state"
                       ) -> dict[str, Any]:
    """The sandbox state file a job names, checked the way the sandbox will read it. The one
    place it is read: job loading calls it (so `validate` and `plan` see a bad state file as
    `run` does) and the run takes its result. Raises JobError naming the file."""
    from bulkgroups.sandbox.state import StateError, load_state  # sandbox jobs only

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise JobError(job, key, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise JobError(job, key, f"{path} is not valid JSON") from None
    try:
        load_state(data)
    except StateError as exc:
        raise JobError(job, key, f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a shape it missed
        raise JobError(job, key, f"{path}: not a sandbox state ({type(exc).__name__})") from None
    assert isinstance(data, dict)  # load_state refuses anything but an object
    return data


def _base_url(t: _Table, url: str, *, allow_insecure_http: bool) -> str:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        t.fail("base_url", "not a valid URL")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        t.fail("base_url", "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        t.fail("base_url", "must not contain a user name or password; use token_env or token_file")
    if parts.query or parts.fragment:
        t.fail("base_url", "must not have a query or a fragment")
    if scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        t.fail(
            "base_url",
            "plain http:// would send the credentials unencrypted; use https://, "
            "or set allow_insecure_http = true",
        )
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _input(t: _Table, kind: TargetKind) -> InputSpec:
    if "select" in t.values:
        return _select_input(t, kind)
    if "path" not in t.values:
        t.fail(None, "name the rows: path (an input file) or select (rows from the directory)")
    path = t.get_path("path", required=True, must_exist=True)
    assert path is not None
    fmt_s = t.get_str("format")
    fmt: Literal["csv", "jsonl"] | None
    if fmt_s is None:
        fmt = detect_format(path)
        if fmt is None:
            t.fail(
                "format",
                f"cannot tell the format from the file name {path.name!r}; "
                'set format = "csv" or "jsonl"',
            )
    elif fmt_s in ("csv", "jsonl"):
        fmt = "csv" if fmt_s == "csv" else "jsonl"
    else:
        t.fail("format", 'must be "csv" or "jsonl"')
    op_s = t.get_str("op")
    op: Op | None = None
    if op_s is not None:
        try:
            op = Op(op_s)
        except ValueError:
            t.fail("op", f"must be one of {_OPS}")
    return InputSpec(path=path, format=fmt, op=op)


_SELECT_KEYS = frozenset({"groups", "member_kind", "where", "indirect", "op", "to_group"})


def _select_input(t: _Table, kind: TargetKind) -> InputSpec:
    """`select = { groups = [...], member_kind = [...] | where = ..., indirect, op, to_group }`:
    each run exports its own rows first (bulkgroups.export)."""
    for other in ("path", "format", "op"):
        if other in t.values:
            t.fail(other, "not with select (the selection writes its rows, op included)")
    raw = t.get("select")
    if not isinstance(raw, dict):
        t.fail("select", f"must be a table such as {{ groups = [...] }}, not {_type_name(raw)}")
    key = "select"
    for k in raw:
        if k not in _SELECT_KEYS:
            t.fail(key, f"unknown key {k!r}" + _hint(k, _SELECT_KEYS))
    groups = _str_list(t, raw, "groups")
    kinds: set[MemberKind] = set()
    for value in _str_list(t, raw, "member_kind"):
        try:
            kinds.add(MemberKind(value.strip().lower()))
        except ValueError:
            t.fail(key, f"member_kind {value!r}: must be user, guest or terminated")
    where = []
    raw_where = raw.get("where", [])
    if isinstance(raw_where, dict):
        # { accountDisabled = true } or { department = ["Sales", "HR"] }: either value.
        pairs = [(p, v) for p, vs in raw_where.items()
                 for v in (vs if isinstance(vs, list) else [vs])]
        texts = [f"{p}={_toml_text(v)}" for p, v in pairs]
    else:
        texts = _str_list(t, raw, "where")
    for text in texts:
        try:
            where.append(parse_where(text))
        except ValueError as exc:
            t.fail(key, f"where {exc}")
    indirect = raw.get("indirect", False)
    if not isinstance(indirect, bool):
        t.fail(key, f"indirect must be true or false, not {_type_name(indirect)}")
    op_s = raw.get("op", "remove")
    if not isinstance(op_s, str):
        t.fail(key, f"op must be a string, not {_type_name(op_s)}")
    try:
        op = Op(op_s)
    except ValueError:
        t.fail(key, 'op must be "remove", "move" or "add"')
    to_group = raw.get("to_group")
    if to_group is not None and (not isinstance(to_group, str) or not to_group.strip()):
        t.fail(key, "to_group must be a group id")
    sel = Selection(groups=tuple(g.strip() for g in groups), member_kind=frozenset(kinds),
                    where=tuple(where), indirect=indirect, op=op,
                    to_group=to_group.strip() if isinstance(to_group, str) else None)
    problem = selection_problem(kind, sel)
    if problem is not None:
        t.fail(key, f"{problem[0]}: {problem[1]}")
    # No file yet: see InputSpec.
    placeholder = t.base / "(select: rows are exported at run time)"
    return InputSpec(path=placeholder, format="jsonl", op=None, select=sel)


def _str_list(t: _Table, raw: Mapping[str, object], name: str) -> list[str]:
    value = raw.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        t.fail("select", f"{name} must be a list of non-empty strings")
    return [str(v) for v in value]


def _toml_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _output(t: _Table) -> OutputSpec:
    results = t.get_str("results")
    keep = t.get_int("keep", None, 1, None)
    if results is None:
        results = _DEFAULT_RESULTS
    if not results.strip():
        t.fail("results", "must not be empty")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(results) if name is not None}
    except ValueError:
        t.fail("results", "unbalanced { or }; write {{ and }} for literal braces")
    if not fields <= _TEMPLATE_FIELDS:
        unknown = ", ".join(sorted(f"{{{f}}}" for f in fields - _TEMPLATE_FIELDS))
        t.fail("results", f"unknown placeholder {unknown}; known: {{job}}, {{date}}, {{time}}")
    if keep is not None and not fields & {"date", "time"}:
        t.fail("keep", "needs a results path with {date} or {time} in it")
    metrics = t.get_path("metrics")
    if metrics is not None and metrics.suffix != ".prom":
        # node_exporter's textfile collector reads only *.prom files.
        t.fail("metrics", f"must end in .prom (node_exporter reads only those): {metrics}")
    return OutputSpec(results=results, keep=keep, metrics=metrics)


def _limits(t: _Table) -> Limits:
    d = Limits()
    return Limits(
        rate=t.get_number("rate", d.rate, above=0.0, at_most=_MAX_RATE),
        concurrency=t.get_int("concurrency", d.concurrency, 1, 1000),
        max_retries=t.get_int("max_retries", d.max_retries, 0, 100),
        timeout_s=t.get_number("timeout_s", d.timeout_s, above=0.0, at_most=3600.0),
        batch_size=t.get_int("batch_size", d.batch_size, 1, 1000),
        precheck=t.get_bool("precheck", d.precheck),
    )


def _safety(t: _Table, kind: TargetKind) -> Safety:
    d = Safety()
    return Safety(
        max_changes=t.get_int("max_changes", d.max_changes, 0, None),
        protected=_protected(t, kind),
        abort_failure_ratio=t.get_number(
            "abort_failure_ratio", d.abort_failure_ratio, above=0.0, at_most=1.0
        ),
        abort_min_rows=t.get_int("abort_min_rows", d.abort_min_rows, 1, None),
        max_group_removal=t.get_number(
            "max_group_removal", d.max_group_removal, above=0.0, at_most=1.0
        ),
        min_group_size=t.get_int("min_group_size", d.min_group_size, 1, None),
        require_approval=t.get_bool("require_approval", d.require_approval),
    )


def _protected(t: _Table, kind: TargetKind) -> frozenset[str]:
    raw = t.get("protected")
    if raw is None:
        return frozenset()
    if not isinstance(raw, list):
        t.fail("protected", f"must be a list of ids, not {_type_name(raw)}")
    out: set[str] = set()
    for i, item in enumerate(raw, 1):
        if not isinstance(item, str) or not item.strip():
            t.fail("protected", f"item {i} must be a non-empty string")
        # An entry that can never match a row protects nothing; say so rather than run.
        problem = id_problem(kind, item.strip())
        if problem is not None:
            t.fail("protected", f"item {i} ({item.strip()!r}): {problem}")
        out.add(norm_id(item))
    return frozenset(out)


def _check_number(path: Path, key: str, value: object, *, above: float, at_most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JobError(path, key, f"must be a number, not {_type_name(value)}")
    if math.isnan(value):
        raise JobError(path, key, "must be a number, not nan")
    if not value > above:
        raise JobError(path, key, f"must be a number greater than {_fmt(above)}")
    if value > at_most:
        raise JobError(path, key, f"must be a number no greater than {_fmt(at_most)}")
    return float(value)


def _check_int(path: Path, key: str, value: object, lo: int, hi: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobError(path, key, f"must be an integer, not {_type_name(value)}")
    if value < lo or (hi is not None and value > hi):
        span = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise JobError(path, key, f"must be an integer {span}")
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def _type_name(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        datetime: "a date-time",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _hint(word: str, known: Mapping[str, object] | frozenset[str]) -> str:
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _secret_error(path: Path, key: str, *, table: str | None = None) -> JobError:
    return JobError(
        path,
        f"[{table}] {key}" if table else key,
        "secrets do not belong in the job file; name an environment variable or a file "
        f"that holds it with {_SECRET_KEYS[key.lower()]} in [target]",
    )


# --- one table ------------------------------------------------------------------------


class _Checker:
    def __init__(self, path: Path, base: Path) -> None:
        self.path = path
        self.base = base

    def table(self, name: str, values: dict[str, Any]) -> _Table:
        for key in values:
            if key.lower() in _SECRET_KEYS:
                raise _secret_error(self.path, key, table=name)
        for key in values:
            if key not in _TABLES[name]:
                raise JobError(
                    self.path, f"[{name}] {key}", "unknown key" + _hint(key, _TABLES[name])
                )
        return _Table(self.path, self.base, name, values)


class _Table:
    """Typed access to one table's keys; every failure names `[table] key`."""

    def __init__(self, path: Path, base: Path, name: str, values: dict[str, Any]) -> None:
        self.path_ = path
        self.base = base
        self.name = name
        self.values = values

    def key(self, key: str | None) -> str:
        return f"[{self.name}] {key}" if key else f"[{self.name}]"

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise JobError(self.path_, self.key(key), message)

    def get(self, key: str) -> object:
        return self.values.get(key)

    def require_str(self, key: str) -> str:
        value = self.get_str(key, required=True)
        assert value is not None
        return value

    def get_str(self, key: str, *, required: bool = False) -> str | None:
        value = self.values.get(key)
        if value is None:
            if required:
                self.fail(key, "missing")
            return None
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {_type_name(value)}")
        if required and not value.strip():
            self.fail(key, "must not be empty")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_type_name(value)}")
        return value

    def get_int(self, key: str, default: _D, lo: int, hi: int | None) -> int | _D:
        if key not in self.values:
            return default
        return _check_int(self.path_, self.key(key), self.values[key], lo, hi)

    def get_number(self, key: str, default: float, *, above: float, at_most: float) -> float:
        if key not in self.values:
            return default
        return _check_number(
            self.path_, self.key(key), self.values[key], above=above, at_most=at_most
        )

    def get_env_name(self, key: str) -> str | None:
        value = self.get_str(key)
        if value is None:
            return None
        if _ENV_RE.fullmatch(value) is None:
            # Never echo it: the usual mistake is pasting the secret itself here.
            self.fail(key, "must be the name of an environment variable (letters, digits, _)")
        return value

    def get_path(
        self, key: str, *, required: bool = False, must_exist: bool = False
    ) -> Path | None:
        value = self.get_str(key, required=required)
        if value is None:
            return None
        if not value.strip():
            self.fail(key, "must not be empty")
        path = self.base / Path(value).expanduser()
        if must_exist and not path.is_file():
            what = "not a file" if path.exists() else "no such file"
            self.fail(key, f"{what}: {shown(path)}")
        return path


def _from_env(
    job: Job, key: str, name: str, environ: Mapping[str, str], *, strip: bool = True
) -> str:
    value = environ.get(name)
    if value is None:
        raise JobError(job.path, f"[target] {key}", f"environment variable {name} is not set")
    if strip:
        value = value.strip()
    if not value:
        raise JobError(job.path, f"[target] {key}", f"environment variable {name} is empty")
    if _has_control(value):
        raise JobError(
            job.path,
            f"[target] {key}",
            f"environment variable {name} holds a line break or control character",
        )
    return value


def _from_file(job: Job, path: Path) -> str:
    key = "[target] token_file"
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise JobError(job.path, key, f"no such file: {shown(path)}") from None
    except UnicodeDecodeError:
        raise JobError(job.path, key, f"not UTF-8 text: {shown(path)}") from None
    except OSError as exc:
        raise JobError(job.path, key, f"cannot read {shown(path)}: {exc.strerror or exc}") from None
    if not value:
        raise JobError(job.path, key, f"empty file: {shown(path)}")
    if _has_control(value):
        raise JobError(job.path, key, f"more than one line, or control characters: {shown(path)}")
    return value


def _open_to_others(path: Path) -> str | None:
    """Why a secret's file is not private to its owner, or None when it is."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # it was just read; a file that vanished since has no mode to fix
    if os.name != "posix" or not mode & 0o077:
        return None
    group, others = mode & 0o070, mode & 0o007
    who = "its group and others" if group and others else "others" if others else "its group"
    return (
        f"token_file {shown(path)} is open to {who} (mode {mode:03o}): anyone who can read it can "
        f"act as this token; chmod 600 {shown(path)}"
    )


def _has_control(value: str) -> bool:
    # A token goes into an HTTP header, where a line break would split it.
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
