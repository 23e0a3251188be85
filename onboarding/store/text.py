"""What PostgreSQL's text can hold."""

from __future__ import annotations

from typing import Any


def storable(value: Any) -> Any:
    """`value` as PostgreSQL can keep it: its text cannot hold a NUL character, so each becomes
    U+FFFD. What people send (a decision's note, the fields of a refused payload) reaches the
    audit log and the outbox this way, instead of failing the write on every retry and so
    holding the application up for good."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
