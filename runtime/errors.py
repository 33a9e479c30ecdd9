"""Errors a user can cause, shared by every front end (CLI, Python API, server).

Every mistake a user can make is a :class:`UserError`: its message is one line that names the
flag, file, field, tensor or limit, and its ``exit_code`` says what kind of mistake it is:

- **2, usage**: the request itself is wrong (an option out of its range, flags that contradict
  each other, empty text) — found without reading any file;
- **1, data**: a file, directory or device is missing, damaged or unusable (a prompt, an engines
  directory, a checkpoint, a full disk, an output path that is a device).

The module-specific errors (``AudioError``, ``ManifestError``, ``CheckpointError``, ...) derive from
these, so a front end catches ``UserError`` once and never prints a traceback for them.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user gave (data: exit code 1 unless a subclass says otherwise)."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """The request is wrong: flags, options, their combination (exit code 2)."""

    exit_code = 2


class OptionError(UsageError):
    """A request option breaks its rule. ``field`` is the option's name in the dataclass (front ends
    map it to their own spelling: ``diffusion_steps`` → ``--diffusion-steps``)."""

    def __init__(self, field: str, value, rule: str):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"{field}={show(value)}: {rule}")


def show(value, limit: int = 100) -> str:
    """A value as one short line for a message (arrays as lists, long ones cut)."""
    text = " ".join(repr(value.tolist() if hasattr(value, "tolist") else value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class WriteError(UserError, OSError):
    """An output cannot be written (not a regular file or a new path, no space, no permission);
    nothing was left under its name."""


__all__ = ["UserError", "UsageError", "OptionError", "WriteError", "show"]
