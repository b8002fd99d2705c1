"""Outcomes out: the results file and its metadata, resume, report, undo and retention."""
