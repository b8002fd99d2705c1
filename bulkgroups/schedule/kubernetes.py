"""`bulkgroups schedule JOB.toml --kubernetes`: the job as a Kubernetes CronJob, for an operator
who runs one job per portal on a cluster rather than a fleet of timers. Pure: the caller
reads the files and passes their text; this builds the manifests and their YAML.

What is printed: a PersistentVolumeClaim (results, metadata, locks and metrics live there,
so `resume` and the next night find them), a ConfigMap with the job file (and its input
when it is small), and the CronJob. The Secret holding the token is NOT printed: its value
never passes through this command; a comment gives the `kubectl create secret` line.

The job file's folder is the volume, mounted at /data, with the job file (and input) laid
over it from the ConfigMap, so every path in the job file (relative to it) means the same
in the pod as on the operator's machine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

DATA: Final = "/data"
UID: Final = 10001  # the Dockerfile's user
CONFIGMAP_MAX: Final = 512 * 1024  # an input up to this size travels in the ConfigMap
STARTING_DEADLINE_S: Final = 3600
# Deadline: every row may take two requests (a move), at the job's rate, half as long again
# for retries and pauses, plus ten minutes for the start and the prechecks' reads.
_REQUESTS_PER_ROW: Final = 2
_SLACK: Final = 1.5
_FIXED_S: Final = 600


@dataclass(frozen=True, slots=True)
class KubeJob:
    name: str  # the job's name
    job_file: str  # its file name
    job_text: str
    cron: str  # normalized 5-field cron
    image: str
    rows: int  # an upper bound on the input's rows (its lines)
    rate: float
    timeout_s: float
    secrets: Sequence[str]  # environment variables the Secret provides
    files: Mapping[str, str] = field(default_factory=dict)  # path under /data -> text
    storage: str = "1Gi"
    time_zone: str = "Etc/UTC"
    deadline_s: int | None = None  # overrides the computed activeDeadlineSeconds


def dns_name(job: str) -> str:
    """The job's name as a DNS-1123 label short enough for a CronJob (52 characters,
    leaving room for the Job's suffix)."""
    base = re.sub(r"[^a-z0-9-]+", "-", job.lower()).strip("-") or "job"
    return f"bulkgroups-{base}"[:52].rstrip("-")


def active_deadline(rows: int, rate: float) -> int:
    return math.ceil(rows * _REQUESTS_PER_ROW / rate * _SLACK) + _FIXED_S


def _key(path: str) -> str:
    """A ConfigMap key for a file path: letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path).strip(".") or "file"


def manifests(k: KubeJob) -> list[dict[str, Any]]:
    name = dns_name(k.name)
    labels = {"app.kubernetes.io/name": "bulkgroups", "app.kubernetes.io/instance": name}
    files = {k.job_file: k.job_text, **k.files}
    keys = {path: _key(path) for path in files}
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-data", "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": k.storage}}},
    }
    config = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-job", "labels": labels},
        "data": {keys[p]: text for p, text in files.items()},
    }
    env = [{"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": var}}}
           for var in k.secrets]
    env.append({"name": "HOME", "value": "/tmp"})
    mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": DATA}]
    mounts += [{"name": "job", "mountPath": f"{DATA}/{p}", "subPath": keys[p],
                "readOnly": True} for p in files]
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    container = {
        "name": "bulkgroups",
        "image": k.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--quiet", f"{DATA}/{k.job_file}"],
        "workingDir": DATA,
        "env": env,
        "volumeMounts": mounts,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": "Never",
            # SIGTERM at the deadline: requests in flight finish (timeout_s), outcomes are
            # written, exit 143; the next night's run (or a resume) does the rest.
            "terminationGracePeriodSeconds": math.ceil(k.timeout_s) + 15,
            "securityContext": {"fsGroup": UID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-data"}},
                {"name": "job", "configMap": {"name": f"{name}-job"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    deadline = k.deadline_s if k.deadline_s is not None else active_deadline(k.rows, k.rate)
    cronjob = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "schedule": k.cron,
            "timeZone": k.time_zone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": STARTING_DEADLINE_S,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 5,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {"backoffLimit": 0, "activeDeadlineSeconds": deadline,
                         "template": pod},
            },
        },
    }
    return [pvc, config, cronjob]


# --- YAML -----------------------------------------------------------------------------------
# A small emitter for the manifests' shapes (maps, lists, strings, numbers, booleans), so the
# command needs no YAML library: strings are written JSON-quoted (a JSON string is a valid
# YAML double-quoted scalar), multi-line text as a literal block.

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")


def _scalar(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return orjson.dumps(str(value)).decode()


def _block_ok(text: str) -> bool:
    return ("\n" in text and not text.startswith((" ", "\n"))
            and all(c == "\n" or c == "\t" or (c.isprintable() and c != "\ufeff") for c in text)
            and not any(line != line.rstrip() for line in text.split("\n")))


def _block(text: str, indent: str) -> str:
    body = text.rstrip("\n")
    trailing = len(text) - len(body)
    chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
    lines = [f"{indent}{line}" if line else "" for line in body.split("\n")]
    lines += [""] * (trailing - 1 if trailing > 1 else 0)
    return f"|{chomp}\n" + "\n".join(lines)


def _key_text(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else orjson.dumps(key).decode()


def _emit(value: object, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            out[-1] += " {}"
            return
        for key, item in value.items():
            head = f"{pad}{_key_text(str(key))}:"
            if (isinstance(item, dict) and item) or (isinstance(item, list) and item):
                out.append(head)
                _emit(item, indent + 1, out)
            elif isinstance(item, dict):
                out.append(head + " {}")
            elif isinstance(item, list):
                out.append(head + " []")
            elif isinstance(item, str) and _block_ok(item):
                out.append(head + " " + _block(item, pad + "  "))
            else:
                out.append(f"{head} {_scalar(item)}")
        return
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                sub: list[str] = []
                _emit(item, indent + 1, sub)
                first = sub[0].lstrip()
                out.append(f"{pad}- {first}")
                out.extend(sub[1:])
            elif isinstance(item, list) and item:
                out.append(f"{pad}-")
                _emit(item, indent + 1, out)
            else:
                out.append(f"{pad}- {_scalar(item)}")
        return
    out.append(pad + _scalar(value))


def to_yaml(docs: Sequence[Mapping[str, Any]], comments: Sequence[str] = ()) -> str:
    parts: list[str] = [f"# {c}" for c in comments]
    for doc in docs:
        parts.append("---")
        _emit(dict(doc), 0, parts)
    return "\n".join(parts) + "\n"
