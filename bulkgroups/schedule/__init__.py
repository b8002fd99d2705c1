"""Nightly runs: systemd units, crontab lines and their run times."""
