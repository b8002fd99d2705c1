"""Writes the demo inputs from jobs/demo-state.json (run again after changing the state):
a mix of every op, rows that are already done, rows that fail and rows that are invalid."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
MISSING_GROUP = "00000000-0000-4000-8000-00000000dead"


def docspace(state: dict) -> list[dict[str, str]]:
    rng = random.Random(1)
    groups = list(state["groups"])
    sales, marketing, engineering, support = groups[:4]
    members = {g: list(state["groups"][g]["members"]) for g in groups}
    users = [u for u, info in state["users"].items() if info["kind"] == "user"]
    rows: list[dict[str, str]] = []
    for m in members[sales][:120]:
        rows.append({"op": "remove", "group": sales, "member": m})
    movers = [m for m in members[marketing] if m in users and m not in members[engineering]]
    for m in movers[:60]:
        rows.append({"op": "move", "group": marketing, "member": m, "to_group": engineering})
    rows.append({"op": "move_all", "group": support, "to_group": engineering})
    joiners = [u for u in users if u not in members[marketing]]
    for u in joiners[:40]:
        rows.append({"op": "add", "group": marketing, "member": u})
    strangers = [u for u in users if u not in members[sales]]
    for u in strangers[:20]:  # not members: with precheck these end noop
        rows.append({"op": "remove", "group": sales, "member": u})
    rows.append({"op": "remove", "group": MISSING_GROUP, "member": members[sales][0]})
    rng.shuffle(rows)
    bad = [
        {"op": "remove", "group": sales, "member": "not-a-uuid"},
        {"op": "delete", "group": sales, "member": members[sales][1]},
        {"op": "move", "group": marketing, "member": members[marketing][50]},
        {"op": "move_all", "group": support, "to_group": support},
    ]
    for i, row in enumerate(bad):
        rows.insert(20 + 37 * i, row)
    return rows


def adaxes(state: dict) -> list[dict[str, str]]:
    objects = state["objects"]
    groups = [dn for dn, o in objects.items() if o["type"] == "group"]
    plain = next(
        g for g in groups if not objects[g].get("approval") and not objects[g].get("denied")
    )
    approval = next(g for g in groups if objects[g].get("approval"))
    denied = next(g for g in groups if objects[g].get("denied"))
    users = [dn for dn, o in objects.items() if o["type"] == "user"]
    members = list(objects[plain]["members"])
    outsiders = [u for u in users if u not in members]
    rows: list[dict[str, str]] = []
    for i, m in enumerate(members[:45]):
        # Members named three ways: by DN, by GUID, by SID.
        ident = [m, objects[m]["guid"], objects[m]["sid"]][i % 3]
        rows.append({"op": "remove", "group": plain, "member": ident})
    for m in members[45:55]:
        rows.append({"op": "move", "group": plain, "member": m, "to_group": approval})
    for m in objects[denied]["members"][:3]:
        rows.append({"op": "remove", "group": denied, "member": m})
    for u in outsiders[:15]:
        rows.append({"op": "add", "group": plain, "member": u})
    for u in outsiders[15:25]:
        rows.append({"op": "remove", "group": plain, "member": u})
    rows.insert(7, {"op": "remove", "group": plain, "member": "Ann Lee"})
    rows.insert(19, {"op": "add", "group": "OU=", "member": members[0]})
    return rows


def main() -> None:
    state = json.loads((HERE / "demo-state.json").read_text(encoding="utf-8"))
    with open(HERE / "demo-docspace.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["op", "group", "member", "to_group"])
        writer.writeheader()
        writer.writerows(docspace(state["docspace"]))
    with open(HERE / "demo-adaxes.jsonl", "w", encoding="utf-8") as f:
        for row in adaxes(state["adaxes"]):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
