"""`bulkgroups schedule` and `bulkgroups plan`: parse the options, call schedule / plan, print.
The logic is in those modules; what is here is files, processes and exit statuses."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import click

from bulkgroups.job import Job, JobError, load_job
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
    parse_cron,
    parse_span,
    service_text,
    timer_text,
)

EXIT_USAGE, EXIT_REFUSED = 2, 3
JOB = click.Path(exists=False, dir_okay=False, path_type=Path)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"bulkgroups: {message}", err=True)
    sys.exit(code)


def _load(job_file: Path) -> Job:
    try:
        return load_job(job_file)
    except JobError as exc:
        _fail(str(exc))


# --- schedule ------------------------------------------------------------------------------


def _is_program(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _this_bulkgroups() -> tuple[str, ...]:
    # abspath, not resolve: a venv's python is a symlink out of the venv.
    return bulkgroups_command(sys.argv[0], sys.executable, is_program=_is_program,
                              which=shutil.which, absolute=os.path.abspath)


def user_unit_dir(environ: Mapping[str, str]) -> Path:
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def _secret_notes(job: Job, env_file: Path | None) -> list[str]:
    t = job.target
    if env_file is not None:
        notes = [f"the token is read from {env_file} at run time; keep it mode 600"]
        wanted = [v for v in (t.token_env, t.username_env, t.password_env) if v]
        if wanted:
            notes.append("that file sets " + " and ".join(f"{v}=..." for v in wanted)
                         + " (one per line)")
        return notes
    if t.token_file is not None:
        return [f"the job reads its token from {t.token_file} at run time; keep it mode 600"]
    wanted = [v for v in (t.token_env, t.username_env, t.password_env) if v]
    if not wanted:
        return []  # a sandbox job needs no secret
    names = " and ".join(f"${v}" for v in wanted)
    return [
        f"the job expects its secret in {names}; a systemd user service (and cron) does not "
        "see your shell's environment:",
        "  put " + " and ".join(f"{v}=..." for v in wanted) + " in a file of mode 600 and pass "
        "--env-file FILE",
    ]


def _env_file_warnings(env_file: Path) -> list[str]:
    try:
        mode = env_file.stat().st_mode
    except FileNotFoundError:
        return [f"{env_file} does not exist yet: create it (mode 600) before the first run"]
    except OSError as exc:
        return [f"cannot check {env_file}: {exc.strerror or exc}"]
    if stat.S_IMODE(mode) & 0o077:
        return [f"{env_file} is readable by others (mode {stat.S_IMODE(mode):03o}): "
                f"chmod 600 {env_file}"]
    return []


def _overlap_note(as_crontab: bool, *, flock: str | None) -> str:
    if not as_crontab:
        return ("the timer does not start a run while the previous one is still going; a run "
                "started by hand on the same results file is refused by the run lock (exit 3)")
    if flock is not None:
        return "a run that starts while the previous one is still going exits 3 (flock)"
    return ("cron starts a run even while the previous one is still going; on the same "
            "results file the run lock refuses it (exit 3)")


def _write_unit(path: Path, text: str) -> None:
    # Whole or not at all: systemd may read the folder at any moment (daemon-reload).
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _install_crontab(line: str, name: str) -> None:
    crontab = shutil.which("crontab")
    if crontab is None:
        _fail("no crontab command on this machine; use the systemd timer instead (drop --crontab)")
    got = subprocess.run([crontab, "-l"], capture_output=True, text=True, check=False)
    if got.returncode != 0 and "no crontab" not in got.stderr.lower():
        _fail(f"crontab -l failed: {got.stderr.strip()}")
    existing = got.stdout if got.returncode == 0 else ""
    put = subprocess.run([crontab, "-"], input=merge_crontab(existing, line, name),
                         capture_output=True, text=True, check=False)
    if put.returncode != 0:
        _fail(f"crontab - failed: {put.stderr.strip()}")


@click.command("schedule")
@click.argument("job_file", type=JOB, metavar="JOB.toml")
@click.option("--cron", "cron_text", required=True, metavar='"M H DOM MON DOW"',
              help='When to run, as a 5-field cron expression ("0 2 * * *") or @daily, '
              "@hourly, @weekly, @monthly, @yearly.")
@click.option("--randomized-delay", default="0", metavar="SPAN", show_default=True,
              help="Start up to this much later, at random (30m, 1h, 90s, 0).")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File with the job's secret (KEY=value lines, mode 600) read at run time.")
@click.option("--crontab", "as_crontab", is_flag=True,
              help="A crontab line instead of a systemd timer and service.")
@click.option("--install", is_flag=True,
              help="Write the units to the systemd user folder (or add the crontab line).")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to --install the units into (default: ~/.config/systemd/user).")
def schedule_command(job_file: Path, cron_text: str, randomized_delay: str,
                     env_file: Path | None, as_crontab: bool, install: bool,
                     unit_dir: Path | None) -> None:
    """Run JOB.toml on a schedule: print (or --install) a systemd user timer and service, or
    a crontab line, that runs `bulkgroups run --quiet JOB.toml`. The token is never written
    into them. Shows the next three run times.
    """
    job = _load(job_file)
    try:
        cron = parse_cron(cron_text)
    except CronError as exc:
        _fail(f'--cron "{cron_text}": {exc}')
    try:
        delay_s = parse_span(randomized_delay)
    except SpanError as exc:
        _fail(f"--randomized-delay: {exc}")
    if unit_dir is not None and (as_crontab or not install):
        _fail("--unit-dir goes with --install of systemd units (not with --crontab)")
    env_path = Path(os.path.abspath(env_file)) if env_file is not None else None
    flock = shutil.which("flock")
    sched = Schedule(name=job.name, job=job.path.resolve(), command=_this_bulkgroups(),
                     cron=cron, delay_s=delay_s, env_file=env_path)
    try:
        if as_crontab:
            texts = [crontab_line(sched, flock=flock)]
        else:
            texts = [service_text(sched), timer_text(sched)]
    except ValueError as exc:
        _fail(str(exc))

    notes: list[str] = []
    if install and as_crontab:
        _install_crontab(texts[0], job.name)
        notes.append(f"added to your crontab (replacing an earlier line ending "
                     f"'# bulkgroups:{job.name}'); check: crontab -l")
    elif install:
        folder = unit_dir if unit_dir is not None else user_unit_dir(os.environ)
        folder.mkdir(parents=True, exist_ok=True)
        for unit, text in ((sched.service, texts[0]), (sched.timer, texts[1])):
            _write_unit(folder / unit, text)
            notes.append(f"wrote {folder / unit}")
    else:
        click.echo("\n".join(texts), nl=False)
        click.echo()

    runs = ", ".join(format_time(t) for t in next_runs(cron, datetime.now().astimezone()))
    later = f" (each up to {format_span(delay_s)} later, at random)" if delay_s else ""
    notes.append(f"next runs (local time): {runs}{later}")
    notes += _secret_notes(job, env_path)
    if not as_crontab:
        enable = (f"systemctl --user daemon-reload && "
                  f"systemctl --user enable --now {sched.timer}")
        if not install:
            notes.append(f"install: the same command with --install, then: {enable}")
        else:
            notes.append(f"enable: {enable}")
        notes += [
            f"check: systemctl --user list-timers {sched.timer}; "
            f"journalctl --user -u {sched.service}",
            "to run while you are logged out: loginctl enable-linger $USER",
        ]
    elif not install:
        notes.append("install: the same command with --install, or add the line with "
                     "`crontab -e`")
    notes.append(_overlap_note(as_crontab, flock=flock))
    for note in notes:
        click.echo(f"# {note}")
    for warning in _env_file_warnings(env_path) if env_path is not None else []:
        click.echo(f"bulkgroups: warning: {warning}", err=True)
