"""How the command-line tools report errors: one line on stderr and an exit code, never a traceback.

- a :class:`~.errors.UserError` prints its message and exits with its code (2: usage, 1: data); an
  :class:`~.errors.OptionError` is spelled with the tool's flag (``--seed -1: must be ...``);
- an ``OSError`` nobody wrapped is a data error (1) naming its file;
- anything else is an internal error (1) that says how to see the traceback: ``--debug``, which
  prints it before the same one line and exit code.

Shared by ``tts-run`` and ``tts-export``; typer's own usage errors (an unparsable number) keep
click's format and its exit code 2.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping

import typer

from .errors import OptionError, UserError, show

USAGE, DATA = 2, 1
EXIT_CODES_HELP = "Exit codes: 0 done; 1 a file, directory or device is missing, damaged or unwritable; 2 usage."


def option_message(e: OptionError, flags: Mapping[str, str]) -> str:
    flag = flags.get(e.field)
    return f"{flag} {show(e.value)}: {e.rule}" if flag else str(e)


@contextlib.contextmanager
def cli_errors(debug: bool = False, flags: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn what the block raises into one line on stderr and the exit code of its kind."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - every exception ends here as one line; --debug shows more
        import click

        if isinstance(e, click.exceptions.ClickException):
            raise
        if debug:
            traceback.print_exc(file=sys.stderr)
        if isinstance(e, OptionError):
            msg, code = option_message(e, flags or {}), USAGE
        elif isinstance(e, UserError):
            msg, code = str(e), e.exit_code
        elif isinstance(e, OSError):
            msg, code = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}", DATA
        else:
            msg, code = (f"internal error: {type(e).__name__}: {e}"
                         + ("" if debug else " (rerun with --debug for the traceback)")), DATA
        typer.echo("error: " + " ".join(msg.split()), err=True)
        raise typer.Exit(code) from None


class _Plain(logging.Formatter):
    """Progress and results as plain lines; ``warning:``/``error:`` in front of what needs it (the
    logger's name only with --verbose, where it helps to tell who said what)."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.verbose:
            msg = f"{record.levelname.lower()} {record.name}: {msg}"
        elif record.levelno >= logging.WARNING:
            msg = f"{'warning' if record.levelno == logging.WARNING else 'error'}: {msg}"
        if record.exc_info and self.verbose:
            msg += "\n" + self.formatException(record.exc_info)
        return msg


def setup_logging(verbose: bool, noisy: tuple[str, ...] = ()) -> None:
    """The CLIs' logging: INFO lines as they are (progress, results), DEBUG with --verbose. The
    ``noisy`` libraries' loggers are held at WARNING unless --verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Plain(verbose))
    # a no-op when the root logger has handlers already (pytest's capture, an embedding program)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


__all__ = ["cli_errors", "option_message", "setup_logging", "USAGE", "DATA", "EXIT_CODES_HELP"]
