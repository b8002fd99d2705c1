"""Rows in: the streaming readers, validation, the protected guard, dedupe and the row source."""
