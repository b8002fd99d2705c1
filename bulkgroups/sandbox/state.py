"""Load, validate and dump the sandbox state (the JSON format of jobs/demo-state.json)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from bulkgroups.sandbox.adaxes_state import AdaxesState, AdObject
from bulkgroups.sandbox.docspace_state import DocSpaceState, DsGroup, DsUser, StateError

__all__ = [
    "AdObject",
    "AdaxesState",
    "DocSpaceState",
    "DsGroup",
    "DsUser",
    "StateError",
    "load_state",
]

StateSource = Mapping[str, Any] | Path | str


def load_state(source: StateSource | None) -> tuple[DocSpaceState, AdaxesState]:
    """Parse a state dict or JSON file; raises StateError when it is not valid."""
    if source is None:
        data: Any = {}
    elif isinstance(source, (str, Path)):
        try:
            data = orjson.loads(Path(source).read_bytes())
        except OSError as exc:
            raise StateError(f"cannot read state file {source}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise StateError(f"state file {source} is not valid JSON: {exc}") from None
    else:
        data = source
    if not isinstance(data, Mapping):
        raise StateError("the state must be a JSON object")
    unknown = set(data) - {"docspace", "adaxes"}
    if unknown:
        raise StateError(f"unknown top-level state keys: {sorted(unknown)}")
    docspace, adaxes = data.get("docspace", {}), data.get("adaxes", {})
    if not isinstance(docspace, Mapping) or not isinstance(adaxes, Mapping):
        raise StateError("state sections 'docspace' and 'adaxes' must be objects")
    for section in (docspace, adaxes):
        for key, value in section.items():
            if key not in ("tokens", "tfa") and not isinstance(value, Mapping):
                raise StateError(f"state key {key!r} must be an object")
    return DocSpaceState(dict(docspace)), AdaxesState(dict(adaxes))


def dump_state(docspace: DocSpaceState, adaxes: AdaxesState) -> dict[str, Any]:
    return {"docspace": docspace.to_json(), "adaxes": adaxes.to_json()}
