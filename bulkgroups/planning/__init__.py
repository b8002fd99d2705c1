"""Plan, review, apply: the saved plan file, the per-group removal guard, group snapshots and
the precondition check `apply` makes at send time."""
