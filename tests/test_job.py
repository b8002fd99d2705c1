"""The job file: every key, every default, every class of error, credentials, templating."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from bulkgroups.job import (
    Credentials,
    InputSpec,
    Job,
    JobError,
    Limits,
    OutputSpec,
    Safety,
    load_credentials,
    load_job,
    results_path,
    with_limits,
)
from bulkgroups.model import Op, TargetKind
from bulkgroups.secret import Secret

UUID_A = "0f8fad5b-d9cb-469f-a165-70867728950e"
UUID_B = "1f8fad5b-d9cb-469f-a165-70867728950e"

MINIMAL = """
[job]
name = "nightly"

[target]
kind = "docspace"
base_url = "https://portal.example.com"
token_env = "DOCSPACE_TOKEN"

[input]
path = "in.csv"
"""


def write_job(tmp_path: Path, text: str, *, inputs: tuple[str, ...] = ("in.csv",)) -> Path:
    for name in inputs:
        (tmp_path / name).write_text("op,group,member,to_group\n", encoding="utf-8")
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, table: str, *lines: str) -> str:
    """`text` with `lines` added at the top of `[table]` (the table is added if absent)."""
    head = f"[{table}]"
    added = "\n".join(lines)
    if head in text:
        return text.replace(head, f"{head}\n{added}", 1)
    return f"{text}\n{head}\n{added}\n"


def without(text: str, key: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} ="))


def job_error(tmp_path: Path, text: str) -> JobError:
    path = write_job(tmp_path, text)
    with pytest.raises(JobError) as info:
        load_job(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


# --- valid jobs ------------------------------------------------------------------------


def test_full_job_reads_every_key(tmp_path: Path) -> None:
    """A job that sets every key comes back with each value in place."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "guests.txt").write_text("op,group\n", encoding="utf-8")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    path = write_job(
        tmp_path,
        f"""
[job]
name = "nightly-guest_cleanup.v2"

[target]
kind = "adaxes"
base_url = "https://host.example.com/restApi/"
token_file = "secrets/token"
ca_file = "ca.pem"
adm_wait_s = 15

[input]
path = "data/guests.txt"
format = "csv"
op = "move_all"

[output]
results = "out/{{job}}-{{date}}.jsonl"
keep = 7

[limits]
rate = 2.5
concurrency = 3
max_retries = 0
timeout_s = 12
batch_size = 1
precheck = false

[safety]
max_changes = 0
protected = ["CN=Domain Admins, CN=Users, DC=example, DC=com", "{{{UUID_A.upper()}}}"]
abort_failure_ratio = 1.0
abort_min_rows = 1
""",
        inputs=(),
    )
    job = load_job(path)
    assert job.path == path.absolute()
    assert job.name == "nightly-guest_cleanup.v2"
    t = job.target
    assert t.kind is TargetKind.ADAXES
    assert t.base_url == "https://host.example.com/restApi"
    assert t.token_file == tmp_path / "secrets" / "token"
    assert (t.token_env, t.username_env, t.password_env) == (None, None, None)
    assert t.ca_file == tmp_path / "ca.pem"
    assert t.adm_wait_s == 15
    assert (t.sandbox, t.sandbox_state, t.allow_insecure_http) == (False, None, False)
    assert job.input == InputSpec(
        path=tmp_path / "data" / "guests.txt", format="csv", op=Op.MOVE_ALL
    )
    assert job.output == OutputSpec(results="out/{job}-{date}.jsonl", keep=7)
    assert job.limits == Limits(
        rate=2.5, concurrency=3, max_retries=0, timeout_s=12.0, batch_size=1, precheck=False
    )
    assert isinstance(job.limits.timeout_s, float)
    assert job.safety == Safety(
        max_changes=0,
        protected=frozenset({"cn=domain admins,cn=users,dc=example,dc=com", UUID_A}),
        abort_failure_ratio=1.0,
        abort_min_rows=1,
    )


def test_minimal_job_takes_every_default(tmp_path: Path) -> None:
    """Optional tables and keys take the documented defaults."""
    job = load_job(write_job(tmp_path, MINIMAL))
    assert job.name == "nightly"
    assert job.target.token_env == "DOCSPACE_TOKEN"
    assert job.target.sandbox is False
    assert job.target.allow_insecure_http is False
    assert job.target.ca_file is None
    assert job.target.adm_wait_s is None
    assert job.input == InputSpec(path=tmp_path / "in.csv", format="csv", op=None)
    assert job.output == OutputSpec()
    assert job.output.results == "results/{job}-{date}-{time}.jsonl"
    assert job.output.keep is None
    assert job.limits == Limits()
    assert job.limits == Limits(20.0, 10, 5, 30.0, 50, True)
    assert job.safety == Safety()
    assert job.safety == Safety(5000, frozenset(), 0.5, 100)


def test_relative_paths_are_from_the_job_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """input.path, token_file and sandbox_state resolve against the job file's folder, not cwd."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "state.json").write_text("{}", encoding="utf-8")
    write_job(jobs, edit(without(MINIMAL, "token_env"), "target", 'token_file = "tok"'))
    monkeypatch.chdir(tmp_path)
    job = load_job(Path("jobs/job.toml"))
    assert job.path == jobs / "job.toml"
    assert job.input.path == jobs / "in.csv"
    assert job.target.token_file == jobs / "tok"

    sandbox = edit(
        without(without(MINIMAL, "token_env"), "base_url"),
        "target",
        "sandbox = true",
        'sandbox_state = "state.json"',
    )
    write_job(jobs, sandbox)
    assert load_job(Path("jobs/job.toml")).target.sandbox_state == jobs / "state.json"


def test_absolute_input_path_is_kept(tmp_path: Path) -> None:
    """An absolute input path is used as written."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "rows.jsonl").write_text("", encoding="utf-8")
    text = MINIMAL.replace('path = "in.csv"', f'path = "{other / "rows.jsonl"}"')
    job = load_job(write_job(tmp_path, text))
    assert job.input == InputSpec(path=other / "rows.jsonl", format="jsonl")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("in.csv", "csv"), ("IN.CSV", "csv"), ("in.jsonl", "jsonl"), ("in.ndjson", "jsonl")],
)
def test_input_format_from_extension(tmp_path: Path, name: str, fmt: str) -> None:
    """Without `format`, .csv means CSV and .jsonl / .ndjson mean JSONL."""
    text = MINIMAL.replace('path = "in.csv"', f'path = "{name}"')
    assert load_job(write_job(tmp_path, text, inputs=(name,))).input.format == fmt


def test_sandbox_job_needs_no_url_and_no_credentials(tmp_path: Path) -> None:
    """sandbox = true runs without base_url and without any credential source."""
    text = edit(without(without(MINIMAL, "token_env"), "base_url"), "target", "sandbox = true")
    job = load_job(write_job(tmp_path, text))
    assert job.target.sandbox is True
    assert job.target.base_url == ""
    assert load_credentials(job, environ={}) == Credentials()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.9.9.9/",
        "http://localhost:5000/api",
        "http://LOCALHOST",
        "http://[::1]:8080",
    ],
)
def test_plain_http_allowed_on_loopback(tmp_path: Path, url: str) -> None:
    """http:// to a loopback host is allowed: the traffic never leaves the machine."""
    text = MINIMAL.replace("https://portal.example.com", url)
    assert load_job(write_job(tmp_path, text)).target.base_url == url.rstrip("/")


def test_plain_http_allowed_when_asked(tmp_path: Path) -> None:
    """allow_insecure_http = true lets http:// reach a non-loopback host."""
    text = edit(MINIMAL.replace("https://", "http://"), "target", "allow_insecure_http = true")
    job = load_job(write_job(tmp_path, text))
    assert job.target.base_url == "http://portal.example.com"
    assert job.target.allow_insecure_http is True


def test_trailing_slashes_are_stripped(tmp_path: Path) -> None:
    """base_url loses its trailing slash so paths can be appended with one."""
    text = MINIMAL.replace("https://portal.example.com", "https://h.example.com/restApi//")
    assert load_job(write_job(tmp_path, text)).target.base_url == "https://h.example.com/restApi"


@pytest.mark.parametrize(
    ("source", "creds"),
    [
        ('token_env = "T"', ("token_env", "T")),
        ('token_file = "tok"', ("token_file", "tok")),
        ('username_env = "U"\npassword_env = "P"', ("username_env", "U")),
    ],
)
def test_each_credential_source_alone(tmp_path: Path, source: str, creds: tuple[str, str]) -> None:
    """Each of the three credential sources is accepted on its own."""
    job = load_job(write_job(tmp_path, edit(without(MINIMAL, "token_env"), "target", source)))
    key, value = creds
    got = getattr(job.target, key)
    assert (got.name if isinstance(got, Path) else got) == value


# --- errors ----------------------------------------------------------------------------


def test_error_has_path_key_and_message(tmp_path: Path) -> None:
    """str(JobError) is 'file: [table] key: what is wrong', with each part an attribute."""
    err = job_error(tmp_path, edit(MINIMAL, "limits", "rate = 0"))
    assert str(err) == f"{tmp_path / 'job.toml'}: [limits] rate: must be a number greater than 0"
    assert err.path == tmp_path / "job.toml"
    assert err.key == "[limits] rate"
    assert err.message == "must be a number greater than 0"


@pytest.mark.parametrize(
    ("table", "line", "expected"),
    [
        ("limits", "rte = 5", "[limits] rte: unknown key (did you mean 'rate'?)"),
        ("target", 'base_ulr = "x"', "[target] base_ulr: unknown key (did you mean 'base_url'?)"),
        ("safety", "protect = []", "[safety] protect: unknown key (did you mean 'protected'?)"),
        ("limits", "zzz = 1", "[limits] zzz: unknown key"),
        (
            "target",
            'TOKEN_ENV = "T"',
            "[target] TOKEN_ENV: unknown key (did you mean 'token_env'?)",
        ),
        ("job", 'title = "x"', "[job] title: unknown key"),
    ],
)
def test_unknown_key(tmp_path: Path, table: str, line: str, expected: str) -> None:
    """An unknown key is named, with the closest known key when one is close."""
    assert str(job_error(tmp_path, edit(MINIMAL, table, line))).endswith(f": {expected}")


def test_unknown_table_suggests(tmp_path: Path) -> None:
    """An unknown table is named, with the closest known table."""
    err = job_error(tmp_path, MINIMAL + "\n[limit]\nrate = 5\n")
    assert err.key == "[limit]"
    assert err.message == "unknown table (did you mean 'limits'?)"


def test_top_level_key_and_non_table(tmp_path: Path) -> None:
    """A key outside any table, or a known table given as a value, is an error."""
    err = job_error(tmp_path, 'name = "x"\n' + MINIMAL)
    assert err.key == "name"
    assert "top-level" in err.message
    err = job_error(tmp_path, "limits = 5\n" + MINIMAL)
    assert (err.key, err.message) == ("[limits]", "must be a table")


@pytest.mark.parametrize("table", ["job", "target", "input"])
def test_missing_required_table(tmp_path: Path, table: str) -> None:
    """[job], [target] and [input] are required."""
    text = MINIMAL.replace(f"[{table}]", "[dropped]")
    lines = text.split("[dropped]")
    rest = lines[1].split("\n[", 1)
    text = lines[0] + ("[" + rest[1] if len(rest) > 1 else "")
    err = job_error(tmp_path, text)
    assert (err.key, err.message) == (f"[{table}]", "missing table")


@pytest.mark.parametrize(
    ("table", "line", "key", "message"),
    [
        ("limits", 'rate = "fast"', "rate", "must be a number, not a string"),
        ("limits", "rate = true", "rate", "must be a number, not a boolean"),
        ("limits", "timeout_s = [1]", "timeout_s", "must be a number, not a list"),
        ("limits", "concurrency = 2.5", "concurrency", "must be an integer, not a number"),
        ("limits", "concurrency = true", "concurrency", "must be an integer, not a boolean"),
        ("limits", "max_retries = '3'", "max_retries", "must be an integer, not a string"),
        ("limits", "precheck = 1", "precheck", "must be true or false, not an integer"),
        ("limits", "precheck = 'yes'", "precheck", "must be true or false, not a string"),
        ("target", "sandbox = 'true'", "sandbox", "must be true or false, not a string"),
        (
            "safety",
            "abort_failure_ratio = false",
            "abort_failure_ratio",
            "must be a number, not a boolean",
        ),
        ("safety", "protected = 'x'", "protected", "must be a list of ids, not a string"),
        ("output", "results = 5", "results", "must be a string, not an integer"),
        ("output", "keep = 1.0", "keep", "must be an integer, not a number"),
        ("input", "op = 1", "op", "must be a string, not an integer"),
    ],
)
def test_wrong_type(tmp_path: Path, table: str, line: str, key: str, message: str) -> None:
    """A value of the wrong type is refused; a boolean is not a number."""
    err = job_error(tmp_path, edit(MINIMAL, table, line))
    assert (err.key, err.message) == (f"[{table}] {key}", message)


def test_name_wrong_type(tmp_path: Path) -> None:
    """[job] name must be a string."""
    err = job_error(tmp_path, MINIMAL.replace('name = "nightly"', "name = 5"))
    assert (err.key, err.message) == ("[job] name", "must be a string, not an integer")


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        ("limits", "rate = 0", "must be a number greater than 0"),
        ("limits", "rate = -1", "must be a number greater than 0"),
        ("limits", "rate = 10000.5", "must be a number no greater than 10000"),
        ("limits", "rate = inf", "must be a number no greater than 10000"),
        ("limits", "rate = nan", "must be a number, not nan"),
        ("limits", "concurrency = 0", "must be an integer from 1 to 1000"),
        ("limits", "concurrency = 1001", "must be an integer from 1 to 1000"),
        ("limits", "max_retries = -1", "must be an integer from 0 to 100"),
        ("limits", "max_retries = 101", "must be an integer from 0 to 100"),
        ("limits", "timeout_s = 0", "must be a number greater than 0"),
        ("limits", "timeout_s = 3601", "must be a number no greater than 3600"),
        ("limits", "batch_size = 0", "must be an integer from 1 to 1000"),
        ("limits", "batch_size = 1001", "must be an integer from 1 to 1000"),
        ("safety", "max_changes = -1", "must be an integer of at least 0"),
        ("safety", "abort_failure_ratio = 0", "must be a number greater than 0"),
        ("safety", "abort_failure_ratio = 1.01", "must be a number no greater than 1"),
        ("safety", "abort_min_rows = 0", "must be an integer of at least 1"),
        ("output", "keep = 0", "must be an integer of at least 1"),
        ("target", "adm_wait_s = -1", "must be an integer from 0 to 3600"),
    ],
)
def test_out_of_range(tmp_path: Path, table: str, line: str, message: str) -> None:
    """Numbers outside their range are refused with the range in the message."""
    text = edit(MINIMAL, table, line)
    if "adm_wait_s" in line:
        text = text.replace('"docspace"', '"adaxes"')
    err = job_error(tmp_path, text)
    assert (err.key, err.message) == (f"[{table}] {line.split(' =')[0]}", message)


def test_range_edges_are_accepted(tmp_path: Path) -> None:
    """The inclusive ends of each range are valid values."""
    text = edit(
        MINIMAL,
        "limits",
        "rate = 10000",
        "concurrency = 1000",
        "max_retries = 100",
        "timeout_s = 3600",
        "batch_size = 1000",
    )
    text = edit(text, "safety", "abort_failure_ratio = 1", "abort_min_rows = 1")
    job = load_job(write_job(tmp_path, text))
    assert job.limits == Limits(10000.0, 1000, 100, 3600.0, 1000, True)
    assert job.safety.abort_failure_ratio == 1.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (None, "missing"),
        ('name = ""', "must not be empty"),
        ('name = "   "', "must not be empty"),
        ('name = "a/b"', "must be 1 to 100 letters, digits, '-', '_' or '.' (it names files)"),
        ('name = ".."', "must be 1 to 100 letters, digits, '-', '_' or '.' (it names files)"),
        (
            'name = "nächtlich"',
            "must be 1 to 100 letters, digits, '-', '_' or '.' (it names files)",
        ),
        (
            f'name = "{"x" * 101}"',
            "must be 1 to 100 letters, digits, '-', '_' or '.' (it names files)",
        ),
    ],
)
def test_job_name(tmp_path: Path, line: str | None, message: str) -> None:
    """[job] name is required and must be safe in a file name."""
    text = MINIMAL.replace('name = "nightly"', line or "")
    err = job_error(tmp_path, text)
    assert (err.key, err.message) == ("[job] name", message)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://portal.example.com",
            "plain http:// would send the credentials unencrypted; "
            "use https://, or set allow_insecure_http = true",
        ),
        ("http://10.0.0.5", "plain http://"),
        ("http://127.0.0.1.example.com", "plain http://"),
        ("ftp://portal.example.com", "must be an http:// or https:// URL with a host"),
        ("portal.example.com", "must be an http:// or https:// URL with a host"),
        ("https://", "must be an http:// or https:// URL with a host"),
        ("https://portal.example.com:99999", "not a valid URL"),
        ("https://portal.example.com/?a=1", "must not have a query or a fragment"),
        ("", "must not be empty"),
    ],
)
def test_base_url_refused(tmp_path: Path, url: str, message: str) -> None:
    """base_url must be http(s) with a host, and plain http only to loopback."""
    err = job_error(tmp_path, MINIMAL.replace("https://portal.example.com", url))
    assert err.key == "[target] base_url"
    assert err.message.startswith(message)


def test_base_url_with_password_is_refused_without_echo(tmp_path: Path) -> None:
    """A URL carrying user:password is refused, and the password is not repeated."""
    err = job_error(tmp_path, MINIMAL.replace("https://", "https://admin:hunter2@"))
    assert err.key == "[target] base_url"
    assert "hunter2" not in str(err)


def test_base_url_required_unless_sandbox(tmp_path: Path) -> None:
    """Without sandbox = true, base_url is required."""
    err = job_error(tmp_path, without(MINIMAL, "base_url"))
    assert (err.key, err.message) == ("[target] base_url", "missing")


def test_kind_must_be_known(tmp_path: Path) -> None:
    """[target] kind is docspace or adaxes."""
    err = job_error(tmp_path, MINIMAL.replace('"docspace"', '"ldap"'))
    assert (err.key, err.message) == ("[target] kind", 'must be "docspace" or "adaxes"')


@pytest.mark.parametrize(
    ("table", "key", "points_to"),
    [
        ("target", "token", "token_env or token_file"),
        ("target", "password", "password_env"),
        ("target", "api_key", "token_env or token_file"),
        ("target", "API_KEY", "token_env or token_file"),
        ("job", "token", "token_env or token_file"),
    ],
)
def test_secret_in_job_file(tmp_path: Path, table: str, key: str, points_to: str) -> None:
    """A secret written into the job file gets its own error, which never repeats the value."""
    err = job_error(tmp_path, edit(MINIMAL, table, f'{key} = "s3cr3t-value"'))
    assert err.key == f"[{table}] {key}"
    assert "secrets do not belong in the job file" in err.message
    assert points_to in err.message
    assert "s3cr3t-value" not in str(err)


def test_secret_at_top_level(tmp_path: Path) -> None:
    """A secret outside any table gets the same pointed error."""
    err = job_error(tmp_path, 'token = "s3cr3t-value"\n' + MINIMAL)
    assert err.key == "token"
    assert "token_env" in err.message
    assert "s3cr3t-value" not in str(err)


def test_secret_pasted_into_token_env_is_not_echoed(tmp_path: Path) -> None:
    """token_env must name a variable; a pasted token is refused without repeating it."""
    err = job_error(tmp_path, MINIMAL.replace('"DOCSPACE_TOKEN"', '"eyJhbGciOi.J9x-y"'))
    assert err.key == "[target] token_env"
    assert "eyJhbGciOi" not in str(err)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ('token_file = "tok"',),
            "name exactly one credential source, found token_env and token_file",
        ),
        (
            ('username_env = "U"', 'password_env = "P"'),
            "name exactly one credential source, found token_env and username_env + password_env",
        ),
    ],
)
def test_two_credential_sources(tmp_path: Path, lines: tuple[str, ...], message: str) -> None:
    """Naming more than one credential source is an error."""
    err = job_error(tmp_path, edit(MINIMAL, "target", *lines))
    assert (err.key, err.message) == ("[target]", message)


def test_no_credential_source(tmp_path: Path) -> None:
    """A job that is not a sandbox must name a credential source."""
    err = job_error(tmp_path, without(MINIMAL, "token_env"))
    assert err.key == "[target]"
    assert err.message.startswith("name a credential source")


@pytest.mark.parametrize(
    ("line", "key"),
    [('username_env = "U"', "password_env"), ('password_env = "P"', "username_env")],
)
def test_username_and_password_go_together(tmp_path: Path, line: str, key: str) -> None:
    """username_env without password_env (or the reverse) is an error."""
    err = job_error(tmp_path, edit(without(MINIMAL, "token_env"), "target", line))
    assert (err.key, err.message) == (
        f"[target] {key}",
        "username_env and password_env go together",
    )


def test_sandbox_state_checks(tmp_path: Path) -> None:
    """sandbox_state must exist and needs sandbox = true."""
    base = without(without(MINIMAL, "token_env"), "base_url")
    err = job_error(tmp_path, edit(base, "target", "sandbox = true", 'sandbox_state = "gone.json"'))
    assert err.key == "[target] sandbox_state"
    assert err.message == f"no such file: {tmp_path / 'gone.json'}"
    (tmp_path / "s.json").write_text("{}", encoding="utf-8")
    err = job_error(tmp_path, edit(MINIMAL, "target", 'sandbox_state = "s.json"'))
    assert (err.key, err.message) == ("[target] sandbox_state", "only with sandbox = true")


def test_ca_file_must_exist(tmp_path: Path) -> None:
    """ca_file names a file that exists, relative to the job file."""
    err = job_error(tmp_path, edit(MINIMAL, "target", 'ca_file = "ca.pem"'))
    assert (err.key, err.message) == ("[target] ca_file", f"no such file: {tmp_path / 'ca.pem'}")


def test_adm_wait_only_for_adaxes(tmp_path: Path) -> None:
    """adm_wait_s belongs to Adaxes targets."""
    err = job_error(tmp_path, edit(MINIMAL, "target", "adm_wait_s = 5"))
    assert (err.key, err.message) == ("[target] adm_wait_s", 'only with kind = "adaxes"')


def test_input_file_must_exist(tmp_path: Path) -> None:
    """A missing input file is named in the error."""
    err = job_error(tmp_path, MINIMAL.replace('"in.csv"', '"data/missing.csv"'))
    assert err.key == "[input] path"
    assert err.message == f"no such file: {tmp_path / 'data' / 'missing.csv'}"
    err = job_error(tmp_path, MINIMAL.replace('"in.csv"', '"."'))
    assert err.message.startswith("not a file: ")


def test_input_format_needed_for_unknown_extension(tmp_path: Path) -> None:
    """An input whose extension tells nothing needs an explicit format."""
    text = MINIMAL.replace('"in.csv"', '"in.txt"')
    with pytest.raises(JobError) as info:
        load_job(write_job(tmp_path, text, inputs=("in.txt",)))
    assert info.value.key == "[input] format"
    assert info.value.message == (
        'cannot tell the format from the file name \'in.txt\'; set format = "csv" or "jsonl"'
    )
    job = load_job(write_job(tmp_path, edit(text, "input", 'format = "jsonl"'), inputs=("in.txt",)))
    assert job.input.format == "jsonl"


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('format = "xml"', "format", 'must be "csv" or "jsonl"'),
        ('op = "delete"', "op", "must be one of remove, move, move_all, add"),
        ('op = "Remove"', "op", "must be one of remove, move, move_all, add"),
    ],
)
def test_input_format_and_op_values(tmp_path: Path, line: str, key: str, message: str) -> None:
    """input.format and input.op take only their known values."""
    err = job_error(tmp_path, edit(MINIMAL, "input", line))
    assert (err.key, err.message) == (f"[input] {key}", message)


@pytest.mark.parametrize("op", list(Op))
def test_input_op_each_value(tmp_path: Path, op: Op) -> None:
    """Every Op is a valid default op."""
    assert load_job(write_job(tmp_path, edit(MINIMAL, "input", f'op = "{op}"'))).input.op is op


@pytest.mark.parametrize(
    ("line", "key", "message"),
    [
        ('results = "r/{user}.jsonl"', "results", "unknown placeholder {user}"),
        ('results = "r/{job.jsonl"', "results", "unbalanced { or }"),
        ('results = "r/{0}.jsonl"', "results", "unknown placeholder {0}"),
        ('results = ""', "results", "must not be empty"),
        (
            'results = "r/{job}.jsonl"\nkeep = 3',
            "keep",
            "needs a results path with {date} or {time}",
        ),
    ],
)
def test_output_checks(tmp_path: Path, line: str, key: str, message: str) -> None:
    """The results template takes {job}, {date}, {time} only; keep needs a dated template."""
    err = job_error(tmp_path, edit(MINIMAL, "output", line))
    assert err.key == f"[output] {key}"
    assert err.message.startswith(message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('[""]', "item 1 must be a non-empty string"),
        (f'["{UUID_A}", 5]', "item 2 must be a non-empty string"),
        ('["CN=Admins,DC=x"]', "item 1 ('CN=Admins,DC=x'): not a UUID"),
    ],
)
def test_protected_checks(tmp_path: Path, value: str, message: str) -> None:
    """protected is a list of non-empty ids valid for the target kind."""
    err = job_error(tmp_path, edit(MINIMAL, "safety", f"protected = {value}"))
    assert (err.key, err.message) == ("[safety] protected", message)


def test_protected_ids_are_normalised(tmp_path: Path) -> None:
    """Protected ids are stored in norm_id form, so any spelling of a row's id matches."""
    text = edit(MINIMAL, "safety", f'protected = [" {UUID_A.upper()} ", "{UUID_B}"]')
    assert load_job(write_job(tmp_path, text)).safety.protected == frozenset({UUID_A, UUID_B})


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    """A TOML syntax error is a JobError that gives the line."""
    text = MINIMAL + "\n[limits]\nrate = = 5\n"
    bad_line = text.splitlines().index("rate = = 5") + 1
    err = job_error(tmp_path, text)
    assert err.key is None
    assert err.message.startswith("invalid TOML: ")
    assert f"line {bad_line}," in err.message


def test_duplicate_key_is_a_syntax_error(tmp_path: Path) -> None:
    """The same key twice is refused by TOML itself."""
    err = job_error(tmp_path, edit(MINIMAL, "limits", "rate = 1", "rate = 2"))
    assert err.message.startswith("invalid TOML: ")


def test_missing_job_file(tmp_path: Path) -> None:
    """A job file that does not exist is a JobError, not an OSError."""
    with pytest.raises(JobError) as info:
        load_job(tmp_path / "nope.toml")
    assert str(info.value) == f"{tmp_path / 'nope.toml'}: no such file"


# --- credentials -----------------------------------------------------------------------


def test_token_from_env(tmp_path: Path) -> None:
    """token_env reads the named variable, stripped, into a Secret."""
    job = load_job(write_job(tmp_path, MINIMAL))
    creds = load_credentials(job, environ={"DOCSPACE_TOKEN": " abc.def \n"})
    assert creds == Credentials(token=Secret("abc.def"))
    assert "abc" not in repr(creds)


def test_unset_token_env_names_the_variable(tmp_path: Path) -> None:
    """An unset variable is named in the error, and no value from the environment leaks."""
    job = load_job(write_job(tmp_path, MINIMAL))
    with pytest.raises(JobError) as info:
        load_credentials(job, environ={"OTHER_TOKEN": "s3cr3t-value"})
    assert info.value.key == "[target] token_env"
    assert info.value.message == "environment variable DOCSPACE_TOKEN is not set"
    assert "s3cr3t-value" not in str(info.value)


@pytest.mark.parametrize("value", ["", "   ", "s3cr3t\nvalue"])
def test_empty_or_broken_token_env(tmp_path: Path, value: str) -> None:
    """An empty variable, or one holding a line break, is refused without showing its value."""
    job = load_job(write_job(tmp_path, MINIMAL))
    with pytest.raises(JobError) as info:
        load_credentials(job, environ={"DOCSPACE_TOKEN": value})
    assert "DOCSPACE_TOKEN" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_token_file(tmp_path: Path) -> None:
    """token_file is read relative to the job file and stripped."""
    text = edit(without(MINIMAL, "token_env"), "target", 'token_file = "secrets/tok"')
    job = load_job(write_job(tmp_path, text))
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "tok").write_text("  tok-123\n", encoding="utf-8")
    assert load_credentials(job, environ={}) == Credentials(token=Secret("tok-123"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file: "),
        (b"", "empty file: "),
        (b"  \n\n", "empty file: "),
        (b"\xff\xfe", "not UTF-8 text: "),
        (b"line-one\nline-two\n", "more than one line, or control characters: "),
    ],
)
def test_token_file_problems(tmp_path: Path, content: bytes | None, message: str) -> None:
    """A missing, empty or unreadable token file is a JobError naming the file, not its content."""
    text = edit(without(MINIMAL, "token_env"), "target", 'token_file = "tok"')
    job = load_job(write_job(tmp_path, text))
    if content is not None:
        (tmp_path / "tok").write_bytes(content)
    with pytest.raises(JobError) as info:
        load_credentials(job, environ={})
    assert info.value.key == "[target] token_file"
    assert info.value.message == message + str(tmp_path / "tok")
    assert "line-one" not in str(info.value)


def test_username_and_password_from_env(tmp_path: Path) -> None:
    """username_env and password_env give a plain user name and a Secret password."""
    text = edit(without(MINIMAL, "token_env"), "target", 'username_env = "U"', 'password_env = "P"')
    job = load_job(write_job(tmp_path, text))
    creds = load_credentials(job, environ={"U": "admin@example.com", "P": " pass word "})
    assert creds == Credentials(username="admin@example.com", password=Secret(" pass word "))
    with pytest.raises(JobError, match="environment variable P is not set"):
        load_credentials(job, environ={"U": "admin"})


# --- results_path and with_limits ------------------------------------------------------


NOW = datetime(2026, 3, 7, 4, 5, 9)


def test_results_path_template(tmp_path: Path) -> None:
    """{job}, {date} and {time} are filled in, relative to the job file's folder."""
    job = load_job(write_job(tmp_path, MINIMAL))
    assert results_path(job, now=NOW) == tmp_path / "results" / "nightly-2026-03-07-040509.jsonl"
    text = edit(MINIMAL, "output", 'results = "out/{date}/{job}_{time}.jsonl"')
    job = load_job(write_job(tmp_path, text))
    assert results_path(job, now=NOW) == tmp_path / "out" / "2026-03-07" / "nightly_040509.jsonl"


def test_results_path_absolute_and_literal_braces(tmp_path: Path) -> None:
    """An absolute template stays absolute; doubled braces are literal braces."""
    text = edit(MINIMAL, "output", f'results = "{tmp_path}/abs/{{{{x}}}}-{{job}}.jsonl"')
    job = load_job(write_job(tmp_path, text))
    assert results_path(job, now=NOW) == tmp_path / "abs" / "{x}-nightly.jsonl"


def test_results_path_override_wins(tmp_path: Path) -> None:
    """A --results path is used as given (relative to the current folder)."""
    job = load_job(write_job(tmp_path, MINIMAL))
    assert results_path(job, now=NOW, override=Path("here.jsonl")) == Path("here.jsonl")


def test_with_limits_overrides(tmp_path: Path) -> None:
    """--rate and --concurrency replace the job's limits; None keeps them."""
    job = load_job(write_job(tmp_path, edit(MINIMAL, "limits", "rate = 5", "max_retries = 2")))
    assert with_limits(job) is job
    changed = with_limits(job, rate=50, concurrency=3)
    assert changed.limits == Limits(rate=50.0, concurrency=3, max_retries=2)
    assert isinstance(changed.limits.rate, float)
    assert job.limits.rate == 5.0
    assert with_limits(job, concurrency=7).limits.rate == 5.0


@pytest.mark.parametrize(
    ("kwargs", "key", "message"),
    [
        ({"rate": 0}, "--rate", "must be a number greater than 0"),
        ({"rate": 20000}, "--rate", "must be a number no greater than 10000"),
        ({"rate": True}, "--rate", "must be a number, not a boolean"),
        ({"concurrency": 0}, "--concurrency", "must be an integer from 1 to 1000"),
        ({"concurrency": 2.0}, "--concurrency", "must be an integer, not a number"),
    ],
)
def test_with_limits_validates(
    tmp_path: Path, kwargs: dict[str, float], key: str, message: str
) -> None:
    """Overrides are checked like the job file's values."""
    job = load_job(write_job(tmp_path, MINIMAL))
    with pytest.raises(JobError) as info:
        with_limits(job, **kwargs)  # type: ignore[arg-type]
    assert (info.value.key, info.value.message) == (key, message)


def test_job_is_frozen(tmp_path: Path) -> None:
    """A loaded Job cannot be changed in place."""
    job: Job = load_job(write_job(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        job.name = "other"  # type: ignore[misc]


def test_credential_warnings_are_returned_not_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token file others can read is a warning the caller gets back (the CLI prints it);
    loading the job's credentials prints nothing itself, and the warning names no secret."""
    text = edit(without(MINIMAL, "token_env"), "target", 'token_file = "tok"')
    job = load_job(write_job(tmp_path, text))
    tok = tmp_path / "tok"
    tok.write_text("tok-123\n", encoding="utf-8")
    tok.chmod(0o644)
    creds = load_credentials(job, environ={})
    assert capsys.readouterr() == ("", "")
    assert creds.warnings == (
        f"token_file {tok} is open to its group and others (mode 644): anyone who can read it "
        f"can act as this token; chmod 600 {tok}",
    )
    assert "tok-123" not in creds.warnings[0]
    assert creds == Credentials(token=Secret("tok-123"))  # warnings are not part of equality
    tok.chmod(0o600)
    assert load_credentials(job, environ={}).warnings == ()
