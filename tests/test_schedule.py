"""`bulkgroups schedule`: cron checked field by field, OnCalendar values (checked against
systemd-analyze when present), unit texts, crontab lines, install, next run times."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bulkgroups.cli.schedule import schedule_command
from bulkgroups.schedule.units import (
    CronError,
    Schedule,
    SpanError,
    bulkgroups_command,
    crontab_line,
    format_span,
    format_time,
    merge_crontab,
    next_runs,
    on_calendar,
    parse_cron,
    parse_span,
    service_text,
    timer_text,
)

BASE = datetime(2026, 11, 23, 11, 7, tzinfo=UTC)  # a Monday
SECRET = "sk-schedule-test-" + "Q9z" * 6

# cron expression -> (normalized cron, OnCalendar values)
CASES: dict[str, tuple[str, list[str]]] = {
    "0 2 * * *": ("0 2 * * *", ["*-*-* 02:00:00"]),
    "*/15 * * * *": ("*/15 * * * *", ["*-*-* *:00/15:00"]),
    "0-30/10 8-18 * * mon-fri": (
        "0,10,20,30 8-18 * * 1-5", ["Mon..Fri *-*-* 08..18:00,10,20,30:00"]
    ),
    "0 0 1,15 * mon": ("0 0 1,15 * 1", ["Mon *-*-* 00:00:00", "*-*-01,15 00:00:00"]),
    "0 0 */2 * 1": ("0 0 */2 * 1", ["Mon *-*-01/2 00:00:00"]),
    "0 0 * * 5-7": ("0 0 * * 0,5,6", ["Fri..Sun *-*-* 00:00:00"]),
    "0 0 * * 0": ("0 0 * * 0", ["Sun *-*-* 00:00:00"]),
    "0 0 * * 7": ("0 0 * * 0", ["Sun *-*-* 00:00:00"]),
    "30 4 1 JAN,jul *": ("30 4 1 1,7 *", ["*-01,07-01 04:30:00"]),
    "5/15 * * * *": ("5,20,35,50 * * * *", ["*-*-* *:05/15:00"]),
    "15 */6 * * *": ("15 */6 * * *", ["*-*-* 00/6:15:00"]),
    "0 9 * */3 *": ("0 9 * */3 *", ["*-01/3-* 09:00:00"]),
    "0 0 1-7 * sun": ("0 0 1-7 * 0", ["Sun *-*-* 00:00:00", "*-*-01..07 00:00:00"]),
    "0 12 13 * fri": ("0 12 13 * 5", ["Fri *-*-* 12:00:00", "*-*-13 12:00:00"]),
    "0 0 29 2 *": ("0 0 29 2 *", ["*-02-29 00:00:00"]),
    "@daily": ("0 0 * * *", ["*-*-* 00:00:00"]),
    "@hourly": ("0 * * * *", ["*-*-* *:00:00"]),
    "@weekly": ("0 0 * * 0", ["Sun *-*-* 00:00:00"]),
    "@monthly": ("0 0 1 * *", ["*-*-01 00:00:00"]),
    "@yearly": ("0 0 1 1 *", ["*-01-01 00:00:00"]),
}

BAD: dict[str, str] = {
    "0 25 * * *": "hour: 25 is out of range 0-23",
    "60 * * * *": "minute: 60 is out of range 0-59",
    "0 0 0 * *": "day-of-month: 0 is out of range 1-31",
    "0 0 32 * *": "day-of-month: 32 is out of range 1-31",
    "0 0 * 13 *": "month: 13 is out of range 1-12",
    "0 0 * foo *": "month: 'foo' is not a number or a month name (jan..dec)",
    "0 0 * * 8": "day-of-week: 8 is out of range 0-7",
    "0 0 * * mox": "day-of-week: 'mox' is not a number or a day name (sun..sat)",
    "0 0 * * fri-mon": "day-of-week: range fri-mon goes backwards",
    "*/0 * * * *": "minute: step must be at least 1, not 0",
    "*/90 * * * *": "minute: step 90 is too large for 0-59",
    "0 */x * * *": "hour: step 'x' is not a number",
    "5-1 * * * *": "minute: range 5-1 goes backwards",
    "1,,2 * * * *": "minute: empty item in '1,,2'",
    "1,* * * * *": "minute: '*' must stand alone",
    "0 0 30 2 *": "day-of-month: 30 never occurs in february",
    "0 0 * *": "expected 5 fields (minute hour day-of-month month day-of-week), got 4",
    "0 0 * * * *": "expected 5 fields (minute hour day-of-month month day-of-week), got 6 (a",
    "@reboot": "@reboot is not a schedule this command makes",
    "": "empty",
}


@pytest.mark.parametrize(("expr", "expected"), CASES.items(), ids=list(CASES))
def test_cron_to_normalized_and_on_calendar(expr: str, expected: tuple[str, list[str]]) -> None:
    """Each expression gives the expected plain cron and OnCalendar values."""
    cron = parse_cron(expr)
    assert cron.normalized == expected[0]
    assert on_calendar(cron) == expected[1]


@pytest.mark.parametrize(("expr", "message"), BAD.items(), ids=list(BAD))
def test_bad_cron_names_the_field(expr: str, message: str) -> None:
    """A wrong expression is refused with a message that starts with the wrong field."""
    with pytest.raises(CronError) as exc:
        parse_cron(expr)
    assert str(exc.value).startswith(message)


def test_day_rule_or_only_when_both_day_fields_are_restricted() -> None:
    """Both day fields restricted: OR (two OnCalendar lines); a '*' in either: AND (one)."""
    assert parse_cron("0 0 1,15 * mon").day_or
    assert not parse_cron("0 0 */2 * mon").day_or
    assert not parse_cron("0 0 1 * *").day_or
    assert len(on_calendar(parse_cron("0 0 1 * 0-7"))) == 2


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("expr", list(CASES))
def test_on_calendar_elapses_where_croniter_says(expr: str) -> None:
    """systemd-analyze accepts every OnCalendar value and its next elapses equal croniter's."""
    cron = parse_cron(expr)
    values = on_calendar(cron)
    done = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=4",
         "--base-time=2026-11-23 11:07:00 UTC", *values],
        capture_output=True, text=True, env={**os.environ, "TZ": "UTC"}, check=False,
    )
    assert done.returncode == 0, done.stderr
    pattern = r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC"
    elapses = sorted(set(re.findall(pattern, done.stdout)))[:4]
    expected = [t.strftime("%Y-%m-%d %H:%M:%S") for t in next_runs(cron, BASE, 4)]
    assert elapses == expected


def test_next_three_runs_in_the_given_zone_and_format() -> None:
    """next_runs follows cron's day rule; format_time is YYYY-MM-DD HH:MM."""
    runs = next_runs(parse_cron("0 0 1,15 * mon"), BASE)
    assert [format_time(t) for t in runs] == [
        "2026-11-30 00:00", "2026-12-01 00:00", "2026-12-07 00:00"
    ]
    assert [format_time(t) for t in next_runs(parse_cron("0 0 */2 * 1"), BASE)] == [
        "2026-12-07 00:00", "2026-12-21 00:00", "2027-01-11 00:00"
    ]


@pytest.mark.parametrize(
    ("text", "seconds", "shown"),
    [("30m", 1800, "30min"), ("1h", 3600, "1h"), ("90s", 90, "90s"), ("0", 0, "0s"),
     ("1h30m", 5400, "90min"), ("45", 45, "45s")],
)
def test_randomized_delay_spans(text: str, seconds: int, shown: str) -> None:
    """Durations parse to seconds and print the way systemd reads them."""
    assert parse_span(text) == seconds
    assert format_span(seconds) == shown


@pytest.mark.parametrize("text", ["", "30x", "-1", "m", "1.5h"])
def test_bad_randomized_delay(text: str) -> None:
    """Anything but a whole duration is refused."""
    with pytest.raises(SpanError):
        parse_span(text)


def _schedule(**kw: object) -> Schedule:
    fields: dict[str, object] = {
        "name": "nightly",
        "job": Path("/srv/jobs/nightly.toml"),
        "command": ("/opt/bg/bin/bulkgroups",),
        "cron": parse_cron("0 2 * * *"),
    }
    fields.update(kw)
    return Schedule(**fields)  # type: ignore[arg-type]


def _settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_service_unit_field_by_field() -> None:
    """The service: oneshot, absolute ExecStart with run --quiet, EnvironmentFile, no token."""
    text = service_text(_schedule(env_file=Path("/home/u/.config/bulkgroups/nightly.env")))
    assert text.splitlines()[0] == "# bulkgroups-nightly.service"
    s = _settings(text)
    assert s["Type"] == ["oneshot"]
    assert s["ExecStart"] == ["/opt/bg/bin/bulkgroups run --quiet /srv/jobs/nightly.toml"]
    assert s["EnvironmentFile"] == ["/home/u/.config/bulkgroups/nightly.env"]
    assert s["WorkingDirectory"] == ["/srv/jobs"]
    assert "overlaps the" in text and "(refused by the run lock)" in text
    assert "EnvironmentFile" not in _settings(service_text(_schedule()))


def test_timer_unit_field_by_field() -> None:
    """The timer: OnCalendar (two for the day OR), Persistent, RandomizedDelaySec, install."""
    text = timer_text(_schedule(cron=parse_cron("0 3 1 * sat"), delay_s=1800))
    assert text.splitlines()[0] == "# bulkgroups-nightly.timer"
    s = _settings(text)
    assert s["OnCalendar"] == ["Sat *-*-* 03:00:00", "*-*-01 03:00:00"]
    assert s["Persistent"] == ["true"]
    assert s["RandomizedDelaySec"] == ["30min"]
    assert s["Unit"] == ["bulkgroups-nightly.service"]
    assert s["WantedBy"] == ["timers.target"]
    assert "RandomizedDelaySec" not in _settings(timer_text(_schedule()))


def test_exec_start_quotes_spaces_and_escapes_specifiers() -> None:
    """Paths with spaces are quoted; '%' and '$' are doubled so systemd expands neither."""
    s = _schedule(job=Path("/srv/my jobs/100%$x.toml"),
                  command=("/usr/bin/python3", "-m", "bulkgroups"))
    exec_start = _settings(service_text(s))["ExecStart"][0]
    assert exec_start == '/usr/bin/python3 -m bulkgroups run --quiet "/srv/my jobs/100%%$$x.toml"'
    with pytest.raises(ValueError, match="line break"):
        service_text(_schedule(job=Path("/srv/a\nb.toml")))


def test_crontab_line_field_by_field() -> None:
    """Five cron fields, the absolute command, flock, the env file sourced, the marker."""
    line = crontab_line(
        _schedule(cron=parse_cron("*/30 1-5 * * mon-fri"), env_file=Path("/etc/bg/n.env")),
        flock="/usr/bin/flock",
    )
    fields = line.split(" ", 5)
    assert fields[:5] == ["*/30", "1-5", "*", "*", "1-5"]
    assert fields[5] == (
        "(set -a; . /etc/bg/n.env; set +a; /usr/bin/flock -n -E 3 /srv/jobs/nightly.toml "
        "/opt/bg/bin/bulkgroups run --quiet /srv/jobs/nightly.toml) # bulkgroups:nightly"
    )


def test_crontab_line_plain_with_delay_and_percent() -> None:
    """No env file: no subshell; a delay sleeps first; '%' is escaped for cron."""
    line = crontab_line(_schedule(cron=parse_cron("@daily"), delay_s=600,
                                  job=Path("/srv/100%.toml")))
    assert line == (
        "0 0 * * * sleep \"$(shuf -i 0-600 -n 1)\" && /opt/bg/bin/bulkgroups run --quiet "
        "/srv/100\\%.toml # bulkgroups:nightly"
    )


def test_merge_crontab_replaces_only_this_jobs_line() -> None:
    """Other lines stay as they were; the job's earlier line is replaced, not duplicated."""
    existing = (
        "MAILTO=ops@example.com\n"
        "0 1 * * * /usr/bin/backup\n"
        "0 2 * * * /old/bulkgroups run --quiet /srv/n.toml # bulkgroups:nightly\n"
        "0 4 * * * /x/bulkgroups run --quiet /srv/o.toml # bulkgroups:nightly-other\n"
    )
    merged = merge_crontab(existing, "5 3 * * * NEW # bulkgroups:nightly", "nightly")
    assert merged.splitlines() == [
        "MAILTO=ops@example.com",
        "0 1 * * * /usr/bin/backup",
        "0 4 * * * /x/bulkgroups run --quiet /srv/o.toml # bulkgroups:nightly-other",
        "5 3 * * * NEW # bulkgroups:nightly",
    ]
    assert merged.endswith("\n")
    assert merge_crontab("", "L # bulkgroups:a", "a") == "L # bulkgroups:a\n"


def test_bulkgroups_command_resolution_order() -> None:
    """The running script, then the one beside this Python, then PATH, then python -m."""
    programs = {"/v/bin/bulkgroups", "/usr/local/bin/bulkgroups"}

    def pick(argv0: str, exe: str, found: str | None, have: set[str]) -> tuple[str, ...]:
        return bulkgroups_command(argv0, exe, is_program=have.__contains__,
                                  which=lambda _: found, absolute=lambda p: p)

    assert pick("/v/bin/bulkgroups", "/v/bin/python", None, programs) == ("/v/bin/bulkgroups",)
    assert pick("-c", "/v/bin/python", None, programs) == ("/v/bin/bulkgroups",)
    assert pick("-c", "/w/bin/python", "/usr/local/bin/bulkgroups", programs) == (
        "/usr/local/bin/bulkgroups",
    )
    assert pick("-c", "/w/bin/python", None, set()) == ("/w/bin/python", "-m", "bulkgroups")


# --- the command ---------------------------------------------------------------------------


def _job(folder: Path, *, name: str = "nightly", secret: str = 'token_env = "BG_TOKEN"') -> Path:
    (folder / "in.csv").write_text("op,group,member\n", encoding="utf-8")
    job = folder / "job.toml"
    job.write_text(
        f'[job]\nname = "{name}"\n[target]\nkind = "docspace"\n'
        f'base_url = "https://portal.example.com"\n{secret}\n'
        '[input]\npath = "in.csv"\n[output]\nresults = "results/{job}-{date}.jsonl"\nkeep = 7\n',
        encoding="utf-8",
    )
    return job


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(schedule_command, list(args),
                              env={"BG_TOKEN": SECRET, **(env or {})})


def test_schedule_prints_units_next_runs_and_secret_note(tmp_path: Path) -> None:
    """Both units with their file-name comments, three run times, where the secret must be."""
    job = _job(tmp_path)
    done = _invoke(str(job), "--cron", "0 2 * * *", "--randomized-delay", "30m")
    assert done.exit_code == 0, done.output
    out = done.output
    assert "# bulkgroups-nightly.service\n" in out and "# bulkgroups-nightly.timer\n" in out
    exec_start = _settings(out)["ExecStart"][0].split(" ")
    assert Path(exec_start[0]).is_absolute() and os.access(exec_start[0], os.X_OK)
    assert exec_start[-3:] == ["run", "--quiet", str(job.resolve())]
    runs = re.search(r"next runs \(local time\): (.*?) \(each up to 30min later", out)
    assert runs is not None
    assert re.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d, ){2}\d{4}-\d\d-\d\d \d\d:\d\d",
                        runs.group(1))
    assert "$BG_TOKEN" in out and "does not see your shell's environment" in out
    assert "systemctl --user daemon-reload && systemctl --user enable --now " \
           "bulkgroups-nightly.timer" in out
    assert "journalctl --user -u bulkgroups-nightly.service" in out
    assert SECRET not in out


def test_schedule_with_env_file_names_it_and_never_the_token(tmp_path: Path) -> None:
    """--env-file becomes EnvironmentFile= and a note; an open mode is warned about."""
    job = _job(tmp_path)
    env_file = tmp_path / "nightly.env"
    env_file.write_text(f"BG_TOKEN={SECRET}\n", encoding="utf-8")
    env_file.chmod(0o644)
    done = _invoke(str(job), "--cron", "@daily", "--env-file", str(env_file))
    assert done.exit_code == 0, done.output
    assert _settings(done.stdout)["EnvironmentFile"] == [str(env_file)]
    assert f"the token is read from {env_file} at run time; keep it mode 600" in done.stdout
    assert "chmod 600" in done.stderr
    assert SECRET not in done.output


def test_schedule_crontab_line(tmp_path: Path) -> None:
    """--crontab prints one line: the normalized cron, the absolute command, the marker."""
    job = _job(tmp_path)
    done = _invoke(str(job), "--cron", "0 2 * * mon-fri", "--crontab")
    assert done.exit_code == 0, done.output
    line = done.stdout.splitlines()[0]
    assert line.startswith("0 2 * * 1-5 ")
    assert line.endswith(f"run --quiet {job.resolve()} # bulkgroups:nightly")
    assert "[Timer]" not in done.stdout


def test_install_writes_both_units_into_the_unit_dir(tmp_path: Path) -> None:
    """--install --unit-dir writes the same texts that are printed, and says how to enable."""
    job = _job(tmp_path)
    printed = _invoke(str(job), "--cron", "15 3 * * *").stdout
    units = tmp_path / "units"
    done = _invoke(str(job), "--cron", "15 3 * * *", "--install", "--unit-dir", str(units))
    assert done.exit_code == 0, done.output
    service = (units / "bulkgroups-nightly.service").read_text(encoding="utf-8")
    timer = (units / "bulkgroups-nightly.timer").read_text(encoding="utf-8")
    assert service + "\n" + timer in printed
    assert f"wrote {units / 'bulkgroups-nightly.timer'}" in done.stdout
    assert "enable: systemctl --user daemon-reload" in done.stdout
    assert sorted(p.name for p in units.iterdir()) == [
        "bulkgroups-nightly.service", "bulkgroups-nightly.timer"
    ]


def test_install_honours_xdg_config_home(tmp_path: Path) -> None:
    """Without --unit-dir the units go to $XDG_CONFIG_HOME/systemd/user."""
    job = _job(tmp_path)
    config = tmp_path / "config"
    done = _invoke(str(job), "--cron", "@weekly", "--install",
                   env={"XDG_CONFIG_HOME": str(config)})
    assert done.exit_code == 0, done.output
    assert (config / "systemd" / "user" / "bulkgroups-nightly.timer").is_file()


@pytest.mark.parametrize(
    ("cron", "message"),
    [("0 25 * * *", 'bulkgroups: --cron "0 25 * * *": hour: 25 is out of range 0-23'),
     ("0 0 * * sunday", "day-of-week: 'sunday' is not a number or a day name"),
     ("0 0 1 2 3 4", "got 6")],
)
def test_bad_cron_exits_2_naming_the_field(tmp_path: Path, cron: str, message: str) -> None:
    """A bad expression exits 2 and writes nothing."""
    job = _job(tmp_path)
    done = _invoke(str(job), "--cron", cron, "--install", "--unit-dir", str(tmp_path / "u"))
    assert done.exit_code == 2
    assert message in done.stderr
    assert not (tmp_path / "u").exists()


def test_bad_delay_and_bad_job_exit_2(tmp_path: Path) -> None:
    """A bad --randomized-delay or a broken job file exits 2."""
    job = _job(tmp_path)
    done = _invoke(str(job), "--cron", "@daily", "--randomized-delay", "soon")
    assert done.exit_code == 2 and "--randomized-delay" in done.stderr
    done = _invoke(str(tmp_path / "missing.toml"), "--cron", "@daily")
    assert done.exit_code == 2 and "no such file" in done.stderr
    done = _invoke(str(job), "--cron", "@daily", "--unit-dir", str(tmp_path))
    assert done.exit_code == 2 and "--unit-dir" in done.stderr
