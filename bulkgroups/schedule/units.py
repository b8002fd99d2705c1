"""Cron expressions for `bulkgroups schedule`: checked field by field, turned into systemd
`OnCalendar=` values, unit files and crontab lines, and their next run times. Pure: no file,
no process, no clock (callers pass `now`).
"""

from __future__ import annotations

import calendar
import itertools
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from croniter import croniter


class CronError(ValueError):
    """A cron expression that cannot be scheduled; the message starts with the field's name."""


class SpanError(ValueError):
    """A duration that is not like 90s, 30m, 1h or 0."""


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    lo: int
    hi: int
    names: tuple[str, ...] = ()  # names[i] stands for lo + i
    what: str = "a number"


_MINUTE = _Spec("minute", 0, 59)
_HOUR = _Spec("hour", 0, 23)
_DOM = _Spec("day-of-month", 1, 31)
_MONTH = _Spec(
    "month", 1, 12,
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    "a number or a month name (jan..dec)",
)
# 7 is Sunday as well as 0; the names cover 0..6 only.
_DOW = _Spec(
    "day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
    "a number or a day name (sun..sat)",
)
_SPECS = (_MINUTE, _HOUR, _DOM, _MONTH, _DOW)

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_NUMBER = re.compile(r"[0-9]+")
_DOW_SYSTEMD = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    lo: int
    hi: int
    values: tuple[int, ...]  # sorted; day-of-week 7 already folded into 0
    star: bool  # the field starts with '*': "unrestricted" in cron's day rule
    cron: str  # the field in plain cron: numbers, ranges, lists, or "*" / "*/n"

    @property
    def full(self) -> bool:
        span = 7 if self.name == _DOW.name else self.hi - self.lo + 1
        return len(self.values) == span


@dataclass(frozen=True, slots=True)
class Cron:
    """A checked 5-field cron expression."""

    text: str  # as given (a macro stays a macro)
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def day_or(self) -> bool:
        """cron runs on a day matching EITHER day field when both are restricted (neither
        starts with '*'), and on days matching both otherwise."""
        return not self.dom.star and not self.dow.star

    @property
    def normalized(self) -> str:
        """The same schedule in the plainest cron every implementation reads alike: numbers,
        ranges and lists only, '*' kept where it was (it decides the day rule)."""
        return " ".join(f.cron for f in self.fields)

    @property
    def fields(self) -> tuple[Field, Field, Field, Field, Field]:
        return (self.minute, self.hour, self.dom, self.month, self.dow)


def parse_cron(text: str) -> Cron:
    """Check every field of a cron expression; CronError names the field that is wrong."""
    given = " ".join(text.split())
    if not given:
        raise CronError("empty; expected 5 fields (minute hour day-of-month month day-of-week)")
    expr = given
    if given.startswith("@"):
        macro = MACROS.get(given.lower())
        if macro is None:
            known = ", ".join(k for k in MACROS if k not in ("@annually", "@midnight"))
            extra = " (use a systemd unit with OnBootSec= instead)" if given == "@reboot" else ""
            raise CronError(f"{given} is not a schedule this command makes{extra}; "
                            f"known: {known}")
        expr = macro
    parts = expr.split(" ")
    if len(parts) != 5:
        hint = " (a seconds field is not supported)" if len(parts) == 6 else ""
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}{hint}"
        )
    minute, hour, dom, month, dow = (_field(s, p) for s, p in zip(_SPECS, parts, strict=True))
    cron = Cron(given, minute, hour, dom, month, dow)
    if not cron.day_or and not dom.star:
        _check_days_exist(dom, month)
    return cron


def _field(spec: _Spec, text: str) -> Field:
    values: set[int] = set()
    items = text.split(",")
    # The largest value that is not an alias: day-of-week 7 is Sunday again.
    top = 6 if spec is _DOW else spec.hi
    for item in items:
        if not item:
            raise CronError(f"{spec.name}: empty item in {text!r}")
        base, slash, step_s = item.partition("/")
        if base == "*":
            if len(items) > 1:
                raise CronError(f"{spec.name}: '*' must stand alone, not in a list ({text!r})")
            lo, hi = spec.lo, top
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, hi = _value(spec, a), _value(spec, b)
            if lo > hi:
                raise CronError(f"{spec.name}: range {base} goes backwards")
        else:
            lo = _value(spec, base)
            # "5/15" is cron shorthand for "5-<max>/15".
            hi = top if slash else lo
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_s):
                raise CronError(f"{spec.name}: step {step_s!r} is not a number")
            step = int(step_s)
            if step < 1:
                raise CronError(f"{spec.name}: step must be at least 1, not {step}")
            if step > top - spec.lo:
                # "*/90" in minutes is not "every 90 minutes": cron cannot say that, and
                # would quietly run once an hour.
                raise CronError(f"{spec.name}: step {step} is too large for {spec.lo}-{top}")
        values.update(range(lo, hi + 1, step))
    if spec is _DOW and 7 in values:
        values.discard(7)
        values.add(0)
    ordered = tuple(sorted(values))
    star = text.startswith("*")
    # A starred field ("*" or "*/n": a '*' cannot be in a list) stays starred: that decides
    # the day rule.
    cron = _cron_list(ordered)
    if star:
        cron = "*" if len(ordered) == top - spec.lo + 1 else f"*/{int(text.partition('/')[2])}"
    return Field(spec.name, spec.lo, spec.hi, ordered, star=star, cron=cron)


def _value(spec: _Spec, token: str) -> int:
    low = token.lower()
    if low in spec.names:
        return spec.lo + spec.names.index(low)
    if not _NUMBER.fullmatch(token):
        raise CronError(f"{spec.name}: {token!r} is not {spec.what}")
    n = int(token)
    if not spec.lo <= n <= spec.hi:
        raise CronError(f"{spec.name}: {n} is out of range {spec.lo}-{spec.hi}")
    return n


def _check_days_exist(dom: Field, month: Field) -> None:
    # Leap years have a 29 February; anything else that no month has is a schedule that
    # never fires, which cron accepts without a word.
    longest = max(calendar.monthrange(2024, m)[1] for m in month.values)
    if min(dom.values) > longest:
        names = ", ".join(calendar.month_name[m].lower() for m in month.values)
        raise CronError(f"day-of-month: {_listed(dom.values)} never occurs in {names}")


def _listed(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values)


# --- cron and systemd renderings -----------------------------------------------------------


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v - 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _cron_list(values: Sequence[int]) -> str:
    parts = []
    for a, b in _runs(values):
        parts.append(str(a) if a == b else f"{a},{b}" if b == a + 1 else f"{a}-{b}")
    return ",".join(parts)


def _calendar_numbers(f: Field) -> str:
    if f.full:
        return "*"
    vs = f.values
    if len(vs) > 2:
        step = vs[1] - vs[0]
        steady = all(b - a == step for a, b in itertools.pairwise(vs))
        # systemd's "a/n" runs to the end of the field, so it fits only a progression that
        # reaches the end.
        if steady and step > 1 and vs[-1] + step > f.hi:
            return f"{vs[0]:02d}/{step}"
    parts = []
    for a, b in _runs(vs):
        if a == b:
            parts.append(f"{a:02d}")
        elif b == a + 1:
            parts.append(f"{a:02d},{b:02d}")
        else:
            parts.append(f"{a:02d}..{b:02d}")
    return ",".join(parts)


def _calendar_weekdays(f: Field) -> str:
    # systemd's week starts on Monday, so a run like Sat..Sun or Fri..Mon is written in that
    # order: Monday-first positions 0..6.
    monday_first = sorted((v - 1) % 7 for v in f.values)
    parts = []
    for a, b in _runs(monday_first):
        first, last = _DOW_SYSTEMD[(a + 1) % 7], _DOW_SYSTEMD[(b + 1) % 7]
        if a == b:
            parts.append(first)
        elif b == a + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}..{last}")
    return ",".join(parts)


def on_calendar(cron: Cron) -> list[str]:
    """The `OnCalendar=` values of the schedule: one, or two when both day fields are
    restricted (cron's OR of the day fields; a timer's several OnCalendar= lines are OR'd)."""
    time = f"{_calendar_numbers(cron.hour)}:{_calendar_numbers(cron.minute)}:00"
    months = _calendar_numbers(cron.month)
    days = _calendar_numbers(cron.dom)
    weekdays = "" if cron.dow.full else _calendar_weekdays(cron.dow) + " "
    if cron.day_or:
        return [f"{weekdays}*-{months}-* {time}", f"*-{months}-{days} {time}"]
    return [f"{weekdays}*-{months}-{days} {time}"]


def next_runs(cron: Cron, now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` run times after `now`, in `now`'s time zone.

    croniter is given the normalized expression, so that both agree with the units and the
    crontab line; `implement_cron_bug` makes '*/n' in a day field count as unrestricted, as
    every Linux cron does.
    """
    it = croniter(cron.normalized, now, implement_cron_bug=True)
    return [it.get_next(datetime) for _ in range(count)]


def format_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M")


# --- durations ---------------------------------------------------------------------------

_SPAN_PART = re.compile(r"([0-9]+)\s*(s|sec|m|min|h|hr|d)?", re.IGNORECASE)
_UNIT_S = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def parse_span(text: str) -> int:
    """Seconds in a duration such as "90s", "30m", "1h", "1h30m" or "0"."""
    s = text.strip()
    pos, total = 0, 0
    while pos < len(s):
        m = _SPAN_PART.match(s, pos)
        if m is None:
            break
        total += int(m.group(1)) * _UNIT_S[(m.group(2) or "").lower()]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
    if not s or pos != len(s):
        raise SpanError(f"{text!r} is not a duration like 90s, 30m, 1h or 0")
    return total


def format_span(seconds: int) -> str:
    """A duration the way systemd writes it."""
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


# --- what is written -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """Everything the units and the crontab line are made of; paths are absolute."""

    name: str  # the job's name
    job: Path
    command: tuple[str, ...]  # how to start bulkgroups: its executable, or python -m bulkgroups
    cron: Cron
    delay_s: int = 0
    env_file: Path | None = None

    @property
    def service(self) -> str:
        return f"bulkgroups-{self.name}.service"

    @property
    def timer(self) -> str:
        return f"bulkgroups-{self.name}.timer"

    @property
    def argv(self) -> tuple[str, ...]:
        return (*self.command, "run", "--quiet", str(self.job))


def _no_newline(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"a path with a line break cannot go into a unit or crontab: {value!r}")
    return value


def _unit_value(value: str) -> str:
    # '%' starts a specifier in every unit setting.
    return _no_newline(value).replace("%", "%%")


def _exec_word(word: str) -> str:
    """One ExecStart= word: quoted when it holds spaces or quotes; '%' and '$' doubled so that
    systemd expands neither."""
    word = _unit_value(word).replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_text(s: Schedule) -> str:
    lines = [
        f"# {s.service}",
        "[Unit]",
        f"Description=bulkgroups job {s.name} ({_unit_value(str(s.job))})",
        "",
        "[Service]",
        "Type=oneshot",
        "# Exit status: 0 every row ok, noop or pending; 1 some rows failed or were invalid",
        "# (see the results file); 2 job-file error (nothing sent); 3 refused or aborted:",
        "# credentials, the max_changes cap, the failure ratio, or a run that overlaps the",
        "# previous one on the same results file (refused by the run lock); 130/143",
        "# interrupted. The timer never starts this service again while it is still running,",
        "# so nightly runs do not overlap.",
        "# Exit 1 is a run that went through its input: the unit succeeds, and the rows that",
        "# failed are reported by [output] metrics (bulkgroups_rows) and [notify]. The unit",
        "# fails (systemctl --failed, OnFailure=) only on 2, 3, 130 and 143: a person is needed.",
        "SuccessExitStatus=1",
        f"WorkingDirectory={_unit_value(str(s.job.parent))}",
    ]
    if s.env_file is not None:
        lines.append("# The token is read from this file at run time (keep it mode 600).")
        lines.append(f"EnvironmentFile={_unit_value(str(s.env_file))}")
    lines.append("ExecStart=" + " ".join(_exec_word(w) for w in s.argv))
    return "\n".join(lines) + "\n"


def timer_text(s: Schedule) -> str:
    lines = [
        f"# {s.timer}",
        "[Unit]",
        f"Description=Run bulkgroups job {s.name} on schedule (cron: {s.cron.text})",
        "",
        "[Timer]",
        *(f"OnCalendar={value}" for value in on_calendar(s.cron)),
        "# A run missed while the machine was off starts at the next boot.",
        "Persistent=true",
    ]
    if s.delay_s:
        lines.append(f"RandomizedDelaySec={format_span(s.delay_s)}")
    lines += [f"Unit={s.service}", "", "[Install]", "WantedBy=timers.target"]
    return "\n".join(lines) + "\n"


def marker(name: str) -> str:
    return f"# bulkgroups:{name}"


def _crontab_word(word: str) -> str:
    # cron turns a bare '%' into a newline; a backslash keeps it.
    return shlex.quote(_no_newline(word)).replace("%", "\\%")


def crontab_line(s: Schedule, *, flock: str | None = None) -> str:
    """The crontab entry, ending with the marker that `merge_crontab` finds it by.

    cron starts a run even while the previous one is still going; `flock` (the path of
    util-linux flock, when present) on the job file turns that overlap into exit 3.
    """
    words = [_crontab_word(w) for w in s.argv]
    command = " ".join(words)
    if flock is not None:
        command = " ".join([_crontab_word(flock), "-n", "-E", "3", _crontab_word(str(s.job)),
                            command])
    if s.delay_s:
        command = f'sleep "$(shuf -i 0-{s.delay_s} -n 1)" && {command}'
    if s.env_file is not None:
        env = _crontab_word(str(s.env_file))
        command = f"(set -a; . {env}; set +a; {command})"
    return f"{s.cron.normalized} {command} {marker(s.name)}"


def merge_crontab(existing: str, line: str, name: str) -> str:
    """`existing` with this job's previous entries replaced by `line` (appended at the end);
    every other line kept as it was."""
    mark = marker(name)
    kept = [raw for raw in existing.splitlines() if not raw.rstrip().endswith(mark)]
    return "\n".join([*kept, line]) + "\n"


def bulkgroups_command(
    argv0: str,
    executable: str,
    *,
    is_program: Callable[[str], bool],
    which: Callable[[str], str | None],
    absolute: Callable[[str], str],
) -> tuple[str, ...]:
    """How a unit starts this very bulkgroups: the script that is running, else the one
    installed beside this Python, else whichever is on PATH, else `python -m bulkgroups`."""
    if Path(argv0).name == "bulkgroups" and is_program(argv0):
        return (absolute(argv0),)
    beside = str(Path(absolute(executable)).parent / "bulkgroups")
    if is_program(beside):
        return (beside,)
    found = which("bulkgroups")
    if found is not None:
        return (absolute(found),)
    return (absolute(executable), "-m", "bulkgroups")
