"""bulkgroups: remove and move group members in bulk through group-management REST APIs."""

from bulkgroups.model import InvalidRow, Op, Outcome, Result, Row, Status, TargetKind

__version__ = "0.1.0"

__all__ = [
    "InvalidRow",
    "Op",
    "Outcome",
    "Result",
    "Row",
    "Status",
    "TargetKind",
    "__version__",
]
