"""Errors a user can cause, shared by every front end (CLI, Python API, server)."""

from __future__ import annotations


class OptionError(ValueError):
    """A request option breaks its rule. ``field`` is the option's name in the dataclass."""

    def __init__(self, field: str, value, rule: str):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"{field}={value!r}: {rule}")


__all__ = ["OptionError"]
