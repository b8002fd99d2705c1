"""Input rows from the live directory: `bulkgroups export` and jobs with `[input] select`.

`select` (pure) says which members a selection takes and checks it; `directory` reads the
groups through the run's transport; `write` puts both together into an input file.
Nothing is imported here, so that job.py can load `select` without aiohttp."""
