"""`bulkgroups schedule` for the morning after: which exit statuses fail the unit, and a
warning when the env file lacks a variable the job names (values are never shown)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from bulkgroups.cli.schedule import schedule_command

SECRET = "sk-ops-test-" + "W4x" * 6


def _job(folder: Path) -> Path:
    (folder / "in.csv").write_text("op,group,member\n", encoding="utf-8")
    job = folder / "nightly.toml"
    job.write_text('[job]\nname = "nightly"\n[target]\nkind = "docspace"\n'
                   'base_url = "https://portal.example.com"\ntoken_env = "BG_TOKEN"\n'
                   '[input]\npath = "in.csv"\n[notify]\nwebhook_env = "BG_HOOK"\n',
                   encoding="utf-8")
    return job


def _env(folder: Path, text: str) -> Path:
    env = folder / "nightly.env"
    env.write_text(text, encoding="utf-8")
    env.chmod(0o600)
    return env


def test_exit_1_does_not_fail_the_unit(tmp_path: Path) -> None:
    done = CliRunner().invoke(schedule_command, [str(_job(tmp_path)), "--cron", "@daily"])
    assert done.exit_code == 0, done.output
    service = done.stdout.split("# bulkgroups-nightly.timer")[0]
    assert "\nSuccessExitStatus=1\n" in service
    assert "only on 2, 3, 130 and 143" in service


def test_env_file_without_the_jobs_variables_is_warned_about(tmp_path: Path) -> None:
    env = _env(tmp_path, f"# nightly\nexport OTHER={SECRET}\nBG_HOOK=https://x/y\n")
    done = CliRunner().invoke(schedule_command, [str(_job(tmp_path)), "--cron", "@daily",
                                                 "--env-file", str(env)])
    assert done.exit_code == 0, done.output
    assert f"{env} does not set BG_TOKEN (the job's [target] token_env)" in done.stderr
    assert "BG_HOOK" not in done.stderr  # it is there
    assert SECRET not in done.output and "https://x/y" not in done.output


def test_env_file_with_every_variable_gives_no_warning(tmp_path: Path) -> None:
    env = _env(tmp_path, f"BG_TOKEN={SECRET}\nexport BG_HOOK=https://x/y\n")
    done = CliRunner().invoke(schedule_command, [str(_job(tmp_path)), "--cron", "@daily",
                                                 "--env-file", str(env)])
    assert done.exit_code == 0, done.output
    assert "warning" not in done.stderr

