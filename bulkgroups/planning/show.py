"""A saved plan, in words: what `plan --show PLAN.jsonl` prints for the person who reviews
it before `apply`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bulkgroups.planning.planfile import PlannedRow, read_header, read_rows

# Enough changes to review on a screen; the file holds them all.
SHOWN_CHANGES = 50


def _change_text(p: PlannedRow) -> str:
    what = {
        "remove": f"remove {p.member} from {p.group}",
        "add": f"add {p.member} to {p.group}",
        "move": f"move {p.member} from {p.group} to {p.to_group}",
        "move_all": f"move every member of {p.group} to {p.to_group}",
    }.get(p.op, f"{p.op} {p.group} {p.member} {p.to_group}".strip())
    pre = "; ".join(str(f) for f in p.pre)
    return f"  line {p.line:>7,}  {what}" + (f"   [rests on: {pre}]" if pre else "")


def render_saved(path: Path) -> str:
    """Raises PlanFileError for a file that is not a whole plan."""
    h = read_header(path)
    totals: Counter[str] = Counter()
    per_group: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    changes: list[str] = []
    for p in read_rows(path):
        totals[p.decision] += 1
        per_group.setdefault(p.group or "(no group)", Counter())[p.decision] += 1
        if p.decision in ("fail", "invalid"):
            reasons[f"{p.decision}: {p.reason or 'no reason given'}"] += 1
        elif p.decision == "change" and len(changes) < SHOWN_CHANGES:
            changes.append(_change_text(p))
    cols = ("change", "already", "fail", "invalid")
    width = max([len("group"), len("total"), *(len(g) for g in per_group)])
    lines = [
        f"plan {path}",
        f"  job     {h.job}",
        f"  target  {h.target.get('kind')} {h.target.get('base_url') or 'sandbox'}",
        f"  input   {h.input} ({h.input_fingerprint.get('size', '?'):,} bytes)",
        f"  read at {h.read_at}, {len(h.groups):,} groups",
        "",
        "group".ljust(width) + "".join(f"  {c:>8}" for c in cols),
    ]
    lines += [g.ljust(width) + "".join(f"  {c[k]:>8,}" for k in cols)
              for g, c in per_group.items()]
    lines.append("total".ljust(width) + "".join(f"  {totals[k]:>8,}" for k in cols))
    if changes:
        more = totals["change"] - len(changes)
        lines += ["", "changes (each sent only if what it rests on still holds):", *changes]
        if more > 0:
            lines.append(f"  ... and {more:,} more in the file")
    if reasons:
        lines += ["", "recorded without a request:"]
        lines += [f"  {n:>6,}  {why}" for why, n in reasons.most_common(20)]
    lines += ["", f"carry it out: bulkgroups apply {path}"]
    return "\n".join(lines) + "\n"
