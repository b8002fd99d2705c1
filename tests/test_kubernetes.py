"""`bulkgroups schedule JOB.toml --kubernetes`: the printed manifests parse as YAML, pass
Kubernetes' own schemas (kubernetes-validate, offline, strict), and say what the CronJob
must say; the Dockerfile builds an image that runs as a non-root user where a builder is."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from bulkgroups.cli.main import cli
from bulkgroups.schedule.kubernetes import active_deadline, dns_name, to_yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.30.0"  # timeZone in CronJob is GA since 1.27


def _job(folder: Path, *, rows: int = 3000, rate: int = 20, extra: str = "") -> Path:
    data = folder / "data"
    data.mkdir(exist_ok=True)
    lines = ["op,group,member"] + [
        f"remove,3f1c2a9e-8b1d-4c5e-9a7f-1b2c3d4e5f60,5e0c7a1b-2d3e-4f50-8a6b-7c8d9e0f{i:04d}"
        for i in range(rows)]
    (data / "guests.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = folder / "nightly.toml"
    job.write_text(
        '[job]\nname = "Nightly_Guest.cleanup"\n'
        '[target]\nkind = "docspace"\nbase_url = "https://portal.example.com"\n'
        'token_env = "DOCSPACE_TOKEN"\n'
        '[input]\npath = "data/guests.csv"\n'
        '[output]\nresults = "results/{job}-{date}-{time}.jsonl"\nmetrics = "metrics/n.prom"\n'
        f"[limits]\nrate = {rate}\ntimeout_s = 30\n"
        '[notify]\nwebhook_env = "SLACK_WEBHOOK"\n' + extra, encoding="utf-8")
    return job


def _print(job: Path, *args: str) -> tuple[list[dict[str, Any]], str, str]:
    done = CliRunner().invoke(cli, ["schedule", str(job), "--cron", "0 2 * * *",
                                    "--kubernetes", *args])
    assert done.exit_code == 0, done.output
    docs = [d for d in yaml.safe_load_all(done.stdout) if d is not None]
    return docs, done.stdout, done.stderr


def test_manifests_pass_the_kubernetes_schemas(tmp_path: Path) -> None:
    docs, _, _ = _print(_job(tmp_path), "--image", "registry.example.com/bulkgroups:0.1.0")
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "ConfigMap", "CronJob"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_cronjob_says_what_a_nightly_run_needs(tmp_path: Path) -> None:
    job = _job(tmp_path, rows=3000, rate=20)
    docs, text, _ = _print(job, "--image", "registry.example.com/bulkgroups:0.1.0")
    pvc, config, cron = docs
    name = dns_name("Nightly_Guest.cleanup")
    assert name == "bulkgroups-nightly-guest-cleanup" and cron["metadata"]["name"] == name
    spec = cron["spec"]
    assert spec["schedule"] == "0 2 * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    jobspec = spec["jobTemplate"]["spec"]
    assert jobspec["backoffLimit"] == 0
    # 3,001 lines (3,000 rows and the header) at 20/s: up to 6,002 requests = 300.1 s,
    # x1.5, + 600 s.
    assert jobspec["activeDeadlineSeconds"] == active_deadline(3001, 20) == 1051
    pod = jobspec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/bulkgroups:0.1.0"
    assert container["args"] == ["run", "--quiet", "/data/nightly.toml"]
    env = {e["name"]: e for e in container["env"]}
    for var in ("DOCSPACE_TOKEN", "SLACK_WEBHOOK"):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": name, "key": var}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["runAsUser"] != 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert volumes["job"]["configMap"]["name"] == config["metadata"]["name"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data"]["name"] == "data"  # results and metrics land on the volume
    assert mounts["/data/nightly.toml"]["name"] == "job"
    assert mounts["/data/data/guests.csv"]["name"] == "job"
    assert config["data"][mounts["/data/nightly.toml"]["subPath"]] == job.read_text()
    assert "kubectl create secret generic " + name in text
    assert pod["terminationGracePeriodSeconds"] > 30  # in-flight requests finish on SIGTERM


def test_no_secret_value_is_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSPACE_TOKEN", "sk-live-" + "Q9" * 12)
    monkeypatch.setenv("SLACK_WEBHOOK", "https://hooks.slack.com/services/T0/B0/zzsecretzz")
    _, text, err = _print(_job(tmp_path))
    assert "Q9Q9" not in text + err and "zzsecretzz" not in text + err
    assert not any(d.get("kind") == "Secret" for d in yaml.safe_load_all(text) if d)


def test_a_large_input_goes_on_the_volume(tmp_path: Path) -> None:
    docs, _, err = _print(_job(tmp_path, rows=20000))
    config = docs[1]
    assert len(config["data"]) == 1  # the job file only
    assert "copy it onto the volume at /data/data/guests.csv" in err
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_refuses_systemd_only_options(tmp_path: Path) -> None:
    job = _job(tmp_path)
    for extra in (["--crontab"], ["--install"], ["--randomized-delay", "15m"]):
        done = CliRunner().invoke(cli, ["schedule", str(job), "--cron", "0 2 * * *",
                                        "--kubernetes", *extra])
        assert done.exit_code == 2, extra


def test_yaml_emitter_round_trips_awkward_strings() -> None:
    doc = {"a": "yes", "b": "0123", "c": "line one\nline two\n", "d": "  lead\n",
           "e": "tail\n\n", "f": "no newline\nat end", "g": "x: y # z", "h": "",
           "i": [], "j": {}, "k": [{"x": 1, "y": [True, None]}], "ü-key": "é\t\x01"}
    assert yaml.safe_load(to_yaml([doc])) == doc


def _builder() -> tuple[str | None, str]:
    for tool in ("docker", "podman"):
        path = shutil.which(tool)
        if path is None:
            continue
        probe = subprocess.run([path, "info"], capture_output=True, text=True, check=False,
                               timeout=30)
        if probe.returncode == 0:
            return path, ""
        reason = f"{tool} is installed but has no engine ({probe.stderr.strip()[:120]})"
        return None, reason
    return None, "no container builder (docker or podman) on this machine"


def test_dockerfile_runs_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["bulkgroups"]' in text


@pytest.mark.timeout(900)
def test_the_image_builds_and_runs_as_non_root() -> None:
    builder, why = _builder()
    if builder is None:
        pytest.skip(why)
    tag = "bulkgroups-test:ci"
    subprocess.run([builder, "build", "-t", tag, str(ROOT)], check=True, timeout=800)
    uid = subprocess.run([builder, "run", "--rm", "--entrypoint", "id", tag, "-u"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert uid.stdout.strip() == "10001"
    version = subprocess.run([builder, "run", "--rm", tag, "--version"], capture_output=True,
                             text=True, check=True, timeout=60)
    assert "bulkgroups" in version.stdout
