"""Kept for imports inside `lsn_mech.experiments`; the helpers live in `lsn_mech.results`."""

from lsn_mech.results import (
    Result,
    ResultFormatError,
    ResultTable,
    canonical,
    json_path,
    load_json,
    save_json,
    table,
    write_csv,
)

__all__ = [
    "Result",
    "ResultFormatError",
    "ResultTable",
    "canonical",
    "json_path",
    "load_json",
    "save_json",
    "table",
    "write_csv",
]
