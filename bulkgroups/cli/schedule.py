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

import click

from bulkgroups import __version__
from bulkgroups.cli.errors import exit_on_error
from bulkgroups.cli.errors import fail as _fail
from bulkgroups.job import Job, load_job
from bulkgroups.rows.readers import count_lines
from bulkgroups.schedule.kubernetes import (
    CONFIGMAP_MAX,
    DATA,
    KubeJob,
    active_deadline,
    dns_name,
    manifests,
    to_yaml,
)
from bulkgroups.schedule.units import (
    Cron,
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

JOB = click.Path(exists=False, dir_okay=False, path_type=Path)


def _load(job_file: Path) -> Job:
    with exit_on_error():  # a JobError exits 2
        return load_job(job_file)


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


def _env_names(env_file: Path) -> set[str] | None:
    """The variable names an EnvironmentFile= sets (values are never kept), or None when
    it cannot be read."""
    try:
        text = env_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    names = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        line = line.removeprefix("export ").strip()
        name, eq, _ = line.partition("=")
        if eq:
            names.add(name.strip())
    return names


def _env_file_warnings(env_file: Path, wanted: dict[str, str] | None = None) -> list[str]:
    """`wanted`: variable -> the job key that names it."""
    try:
        mode = env_file.stat().st_mode
    except FileNotFoundError:
        return [f"{env_file} does not exist yet: create it (mode 600) before the first run"]
    except OSError as exc:
        return [f"cannot check {env_file}: {exc.strerror or exc}"]
    warnings = []
    if stat.S_IMODE(mode) & 0o077:
        warnings.append(f"{env_file} is readable by others (mode {stat.S_IMODE(mode):03o}): "
                        f"chmod 600 {env_file}")
    names = _env_names(env_file)
    for var, key in (wanted or {}).items():
        if names is not None and var not in names:
            warnings.append(f"{env_file} does not set {var} (the job's {key}): the run will "
                            f"stop with exit 2; add a line {var}=...")
    return warnings


def _wanted_env(job: Job) -> dict[str, str]:
    t = job.target
    pairs = (("[target] token_env", t.token_env), ("[target] username_env", t.username_env),
             ("[target] password_env", t.password_env),
             ("[notify] webhook_env", job.notify.webhook_env))
    return {var: key for key, var in pairs if var}


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
@click.option("--kubernetes", "as_kubernetes", is_flag=True,
              help="Print Kubernetes manifests instead: a CronJob (schedule in UTC), the "
              "PersistentVolumeClaim for results and metrics, and a ConfigMap with the job "
              "file. Pipe them to `kubectl apply -f -`.")
@click.option("--image", metavar="IMAGE", default=f"bulkgroups:{__version__}",
              show_default=True, help="With --kubernetes: the image built from the Dockerfile.")
@click.option("--storage", metavar="SIZE", default="1Gi", show_default=True,
              help="With --kubernetes: the size of the results volume.")
@click.option("--active-deadline", metavar="SPAN",
              help="With --kubernetes: stop a run after this long (default: from the input's "
              "size and the job's rate).")
def schedule_command(job_file: Path, cron_text: str, randomized_delay: str,
                     env_file: Path | None, as_crontab: bool, install: bool,
                     unit_dir: Path | None, as_kubernetes: bool, image: str, storage: str,
                     active_deadline: str | None) -> None:
    """Run JOB.toml on a schedule: print (or --install) a systemd user timer and service, or
    a crontab line, that runs `bulkgroups run --quiet JOB.toml`; or with --kubernetes, the
    manifests of a CronJob. The token is never written into them. Shows the next three run
    times.
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
    if as_kubernetes:
        _kubernetes(job, cron, image=image, storage=storage, delay_s=delay_s,
                    deadline=active_deadline, env_file=env_file,
                    conflicts=as_crontab or install or unit_dir is not None)
        return
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
    for warning in (_env_file_warnings(env_path, _wanted_env(job)) if env_path is not None
                    else []):
        click.echo(f"bulkgroups: warning: {warning}", err=True)


def _kube_file(job: Job, path: Path | None, what: str, notes: list[str],
               files: dict[str, str]) -> None:
    """Put a file the job names into the ConfigMap when it lies beside the job and is small
    text; otherwise say where it has to be."""
    if path is None:
        return
    base = job.path.parent
    try:
        rel = path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        notes.append(f"{what} {path} is outside the job's folder: it is not in the pod; "
                     "move it beside the job file, or put it on the volume and point the "
                     "job at it")
        return
    try:
        size = path.stat().st_size
        text = path.read_text(encoding="utf-8") if size <= CONFIGMAP_MAX else None
    except (OSError, UnicodeDecodeError):
        text = None
    if text is None:
        notes.append(f"{what} {rel} is too large for the ConfigMap (over "
                     f"{CONFIGMAP_MAX // 1024} KiB) or not text: copy it onto the volume "
                     f"at {DATA}/{rel} (e.g. kubectl cp) before the first run")
        return
    files[rel] = text


def _kubernetes(job: Job, cron: Cron, *, image: str, storage: str, delay_s: int,
                deadline: str | None, env_file: Path | None, conflicts: bool) -> None:
    if conflicts:
        _fail("--kubernetes prints manifests for kubectl: it does not go with --crontab, "
              "--install or --unit-dir")
    if delay_s:
        _fail("--randomized-delay is for systemd timers; a CronJob starts on time (spread "
              "jobs for the same portal with their --cron instead)")
    try:
        deadline_s = parse_span(deadline) if deadline is not None else None
    except SpanError as exc:
        _fail(f"--active-deadline: {exc}")
    if deadline_s is not None and deadline_s < 60:
        _fail("--active-deadline: give a run at least a minute")
    t = job.target
    notes: list[str] = []
    if t.token_file is not None:
        notes.append("the job reads token_file, which is not in the pod: use token_env so "
                     "the token comes from the Secret")
    secrets = [v for v in (t.token_env, t.username_env, t.password_env,
                           job.notify.webhook_env) if v]
    files: dict[str, str] = {}
    _kube_file(job, job.input.path, "the input", notes, files)
    _kube_file(job, t.sandbox_state, "the sandbox state", notes, files)
    _kube_file(job, t.ca_file, "the CA file", notes, files)
    metrics = job.output.metrics
    if metrics is not None:
        try:
            rel = metrics.resolve().relative_to(job.path.parent.resolve()).as_posix()
            notes.append(f"metrics are written to the volume at {DATA}/{rel}; a textfile "
                         "collector that reads the volume, or a sidecar, exposes them")
        except ValueError:
            notes.append(f"[output] metrics {metrics} is outside the job's folder, so not on "
                         "the volume: give it a path beside the job file")
    try:
        rows = count_lines(job.input.path)
    except OSError:
        rows = 0
    kube = KubeJob(name=job.name, job_file=job.path.name,
                   job_text=job.path.read_text(encoding="utf-8"), cron=cron.normalized,
                   image=image, rows=rows, rate=job.limits.rate, timeout_s=job.limits.timeout_s,
                   secrets=secrets, files=files, storage=storage, deadline_s=deadline_s)
    name = dns_name(job.name)
    given = deadline_s if deadline_s is not None else active_deadline(rows, job.limits.rate)
    how = ("as given" if deadline_s is not None else
           f"from {rows:,} input lines at rate {job.limits.rate:g}/s: two requests a row, "
           "half as long again for retries, plus 10 min")
    source = f"--from-env-file={env_file}" if env_file is not None else " ".join(
        f"--from-literal={v}=..." for v in secrets)
    comments = [
        f"bulkgroups job {job.name}: kubectl apply -f - (namespace: kubectl -n NS)",
        f"schedule: {cron.normalized} (UTC); concurrencyPolicy Forbid: never two runs at "
        "once; backoffLimit 0: the next night is the retry",
        f"activeDeadlineSeconds {given:,} ({how}); a run cut off there exits 143, and its "
        "rows not reached are in the metrics and the next run",
        "exit 1 (some rows failed, invalid or stale) marks the Job failed; 2, 3, 130 and 143 as "
        "well: alert on the metrics (bulkgroups_rows, bulkgroups_exit_code)",
    ]
    if secrets:
        comments.append(f"the Secret is not printed; create it first: kubectl create secret "
                        f"generic {name} {source}")
    comments += notes
    click.echo(to_yaml(manifests(kube), comments), nl=False)
    for note in notes:
        click.echo(f"bulkgroups: warning: {note}", err=True)
