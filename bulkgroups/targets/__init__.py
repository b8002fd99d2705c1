"""Target adapters: what each API needs for a row, and how its answers become outcomes.

Nothing is imported here, so that `bulkgroups.targets.base` (the Target protocol the engine
uses) loads without aiohttp."""
