"""Results that accumulate: templated paths, the newest N kept, nothing else touched."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from bulkgroups.job import Job, load_job, results_path
from bulkgroups.results.file import meta_path
from bulkgroups.results.lock import lock_path, run_lock
from bulkgroups.results.retention import latest_results, prune, results_files


def _job(folder: Path, results: str, *, name: str = "nightly", keep: int | None = 3) -> Job:
    (folder / "in.csv").write_text("op,group,member\n", encoding="utf-8")
    keep_line = f"keep = {keep}\n" if keep is not None else ""
    (folder / "job.toml").write_text(
        f'[job]\nname = "{name}"\n[target]\nkind = "docspace"\n'
        'base_url = "https://portal.example.com"\ntoken_env = "T"\n'
        f'[input]\npath = "in.csv"\n[output]\nresults = "{results}"\n{keep_line}',
        encoding="utf-8",
    )
    return load_job(folder / "job.toml")


def _night(job: Job, day: int, *, hour: int = 2) -> Path:
    """Write the results, metadata and lock of a run on 2026-11-`day`, aged by its date."""
    path = results_path(job, now=datetime(2026, 11, day, hour, 0, 5))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"row": 1}\n', encoding="utf-8")
    meta_path(path).write_text("{}", encoding="utf-8")
    lock_path(path).write_text("", encoding="utf-8")
    stamp = datetime(2026, 11, day, hour, 30).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_date_template_gives_one_file_a_night(tmp_path: Path) -> None:
    """{job} and {date} fill in; each night writes its own file beside the job."""
    job = _job(tmp_path, "results/{job}-{date}.jsonl")
    assert results_path(job, now=datetime(2026, 11, 23, 2, 0)) == (
        tmp_path / "results" / "nightly-2026-11-23.jsonl"
    )
    assert results_path(job, now=datetime(2026, 11, 24, 2, 0)).name == "nightly-2026-11-24.jsonl"


def test_keeps_exactly_the_newest_n_with_their_metadata(tmp_path: Path) -> None:
    """Of six nights, keep = 3 leaves the newest three; the others lose meta and lock too."""
    job = _job(tmp_path, "results/{job}-{date}-{time}.jsonl")
    nights = [_night(job, day) for day in range(18, 24)]
    removed = prune(job, keep=3, current=nights[-1])
    assert removed == nights[:3]
    assert results_files(job) == nights[3:]
    for gone in nights[:3]:
        assert not gone.exists() and not meta_path(gone).exists()
        assert not lock_path(gone).exists()
    for kept in nights[3:]:
        assert meta_path(kept).exists()
    assert prune(job, keep=3, current=nights[-1]) == []


def test_leaves_files_that_do_not_fit_the_template(tmp_path: Path) -> None:
    """Another job with a longer name, hand-made files and metadata are never candidates."""
    job = _job(tmp_path, "results/{job}-{date}.jsonl")
    nights = [_night(job, day) for day in (20, 21, 22)]
    folder = tmp_path / "results"
    strangers = [
        folder / "nightly-extra-2026-11-01.jsonl",  # the job "nightly-extra"
        folder / "nightly-2026-11-1.jsonl",  # not a date
        folder / "nightly-latest.jsonl",
        folder / "nightly-2026-11-02.jsonl.bak",
        folder / "notes.txt",
    ]
    for p in strangers:
        p.write_text("x", encoding="utf-8")
        os.utime(p, (0, 0))  # older than every night
    assert results_files(job) == nights
    assert prune(job, keep=1) == nights[:2]
    assert all(p.exists() for p in strangers)
    assert latest_results(job) == nights[2]


def test_never_deletes_the_current_run_even_when_it_is_oldest(tmp_path: Path) -> None:
    """A resumed old file is the current run: it stays, and counts as one of the N."""
    job = _job(tmp_path, "{job}-{date}.jsonl")
    nights = [_night(job, day) for day in (19, 20, 21, 22)]
    removed = prune(job, keep=2, current=nights[0])
    assert removed == nights[1:3]
    assert [p for p in nights if p.exists()] == [nights[0], nights[3]]


def test_skips_a_file_another_run_is_working_on(tmp_path: Path) -> None:
    """A results file whose run lock is held (a resume in progress) is not deleted."""
    job = _job(tmp_path, "results/{job}-{date}.jsonl")
    nights = [_night(job, day) for day in (20, 21, 22)]
    with run_lock(nights[0]):
        removed = prune(job, keep=1)
    assert removed == [nights[1]]
    assert nights[0].exists() and meta_path(nights[0]).exists()


def test_folders_per_date_are_found_and_emptied_ones_removed(tmp_path: Path) -> None:
    """A template with {date} in a folder: the files are found there; emptied folders go."""
    job = _job(tmp_path, "runs/{date}/{job}.jsonl")
    nights = [_night(job, day) for day in (20, 21, 22)]
    (tmp_path / "runs" / "2026-11-20" / "keep-me.txt").write_text("x", encoding="utf-8")
    assert results_files(job) == nights
    prune(job, keep=1)
    assert not (tmp_path / "runs" / "2026-11-21").exists()
    assert (tmp_path / "runs" / "2026-11-20" / "keep-me.txt").exists()
    assert (tmp_path / "runs").is_dir()
    assert results_files(job) == nights[2:]


def test_absolute_template_and_literal_braces(tmp_path: Path) -> None:
    """An absolute results path works; '{{' and '}}' are literal braces in the name."""
    job = _job(tmp_path, f"{tmp_path.as_posix()}/out/{{{{x}}}}-{{job}}-{{time}}.jsonl")
    first = _night(job, 21, hour=1)
    second = _night(job, 22)
    assert first.name == "{x}-nightly-010005.jsonl"
    assert results_files(job) == [first, second]
    assert prune(job, keep=1) == [first]


def test_no_results_yet_and_bad_keep(tmp_path: Path) -> None:
    """Nothing written yet is no error; keep below 1 is."""
    job = _job(tmp_path, "results/{job}-{date}.jsonl")
    assert results_files(job) == [] and latest_results(job) is None
    assert prune(job, keep=2) == []
    with pytest.raises(ValueError, match="keep"):
        prune(job, keep=0)
