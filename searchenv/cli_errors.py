"""How every command reports a user's mistake: one line on stderr, exit 2 or 1, no traceback.

Every ``main`` of the project's commands (``searchenv``, ``agents.train``, ``agents.evaluate``,
the leaderboard, the experiments, the demo) is wrapped in :func:`reports_errors` and builds its
options with :class:`ArgumentParser`. Together they give::

    $ searchenv play --task nosuch
    error: unknown task 'nosuch'; known tasks: factbook, jsonl, synthetic
    $ echo $?
    2

What counts as the user's mistake, and what stays a traceback:

- :class:`UsageError` (exit 2: an option's value, a file or checkpoint that is not there, an
  unknown task, model, split, question or backend) and :class:`CommandError` (exit 1: the
  command line was fine but the world was not: a port taken, a server down, a corrupt index).
- The project's own error types, wherever they are raised, since they only ever describe the
  user's data or set-up: ``DatasetSpecError`` and ``JsonlFormatError`` (2), ``IndexCorruptError``
  and the remote backend's errors (1); and a failed child command (1: it printed its own
  message).
- ``ValueError``, ``LookupError`` and ``FileNotFoundError``-like ``OSError`` only when raised
  inside :func:`user_input`, the block where a command checks what it was given (argument
  checks, loading the task, resolving a checkpoint) before any heavy work. The same exception
  raised later, in training or evaluation, is a bug and keeps its traceback.

``--debug`` (every command has it) or ``SEARCHENV_DEBUG=1`` shows the traceback of a user's
mistake too; ``--debug`` sets the variable, so the child processes of the demo and the
experiments show theirs.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn, Protocol

DEBUG_ENV = "SEARCHENV_DEBUG"
USAGE = 2
FAILURE = 1
INTERRUPTED = 130


class MainFunction(Protocol):
    """A command's ``main``: ``main(argv=None) -> exit code``."""

    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


# The project's error types, by qualified name (so that nothing is imported to classify an error).
_PROJECT_ERRORS: dict[str, int] = {
    "tasks.dataset.DatasetSpecError": USAGE,
    "tasks.jsonl_lines.JsonlFormatError": USAGE,
    "searchenv.retrieval.integrity.IndexCorruptError": FAILURE,
    "searchenv.retrieval.remote.RemoteUnavailableError": FAILURE,
    "searchenv.retrieval.remote.RemoteRequestError": FAILURE,
}

# What user_input() turns into a UsageError: the errors input checks raise.
_INPUT_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    LookupError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
)


class CommandError(Exception):
    """A failure the user can act on (exit 1); the message says what went wrong and the fix."""

    exit_code = FAILURE


class UsageError(CommandError):
    """A mistake on the command line (exit 2): a bad value, a missing file, an unknown name."""

    exit_code = USAGE


def debug_enabled() -> bool:
    """Whether ``--debug`` or ``SEARCHENV_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    r"""``text`` with its whitespace runs (newlines included) collapsed to single spaces.

    >>> one_line("no such file\n  try again ")
    'no such file try again'
    """
    return " ".join(text.split())


def message_of(error: BaseException) -> str:
    """The readable message of an exception (a ``KeyError``'s without the quotes of its repr).

    >>> message_of(KeyError("task 'x' has no split 'y'"))
    "task 'x' has no split 'y'"
    >>> message_of(ValueError())
    'ValueError'
    """
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        text = error.args[0]
    elif isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error)
    return one_line(text) or type(error).__name__


def exit_code_of(error: BaseException) -> int | None:
    """The exit code a user's mistake earns, or None for an exception that is a bug."""
    if isinstance(error, CommandError):
        return error.exit_code
    if isinstance(error, subprocess.CalledProcessError):
        return FAILURE
    for cls in type(error).__mro__:
        code = _PROJECT_ERRORS.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        command = error.cmd if isinstance(error.cmd, str) else " ".join(map(str, error.cmd))
        return f"{command!r} failed with exit code {error.returncode} (its output above says why)"
    return message_of(error)


def report(error: BaseException) -> None:
    """Print ``error: <message>`` as one line on stderr."""
    print(f"error: {_describe(error)}", file=sys.stderr, flush=True)


@contextmanager
def user_input() -> Iterator[None]:
    """Mark the block that checks what the user gave: its input errors become :class:`UsageError`.

    Put argument checks, task loading and checkpoint resolution in it, before any heavy work;
    keep training and evaluation outside, where a ``ValueError`` is a bug.

    >>> with user_input():
    ...     int("seven")
    Traceback (most recent call last):
    ...
    searchenv.cli_errors.UsageError: invalid literal for int() with base 10: 'seven'
    """
    try:
        yield
    except CommandError:
        raise
    except _INPUT_ERRORS as error:
        if exit_code_of(error) is not None:  # one of the project's types: classified as such
            raise
        raise UsageError(message_of(error)) from error


def reports_errors(main: MainFunction) -> MainFunction:
    """Wrap a command's ``main``: a user's mistake prints one line and returns its exit code.

    Bugs propagate with their traceback. ``KeyboardInterrupt`` prints ``interrupted`` and
    returns 130. Under ``--debug`` / ``SEARCHENV_DEBUG=1`` every exception propagates.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            print("interrupted", file=sys.stderr)
            return INTERRUPTED
        except Exception as error:
            code = exit_code_of(error)
            if code is None or debug_enabled():
                raise
            report(error)
            return code

    return wrapper


class _DebugAction(argparse.Action):
    """``--debug``: sets ``SEARCHENV_DEBUG=1`` (for this process and its children); stores nothing."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)",
        )

    def __call__(self, parser: object, namespace: object, values: object, option: object = None) -> None:
        os.environ[DEBUG_ENV] = "1"


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` once, and only where it says something.

    Not when the help already speaks of its default, not for ``None`` (the help says what unset
    means) and not for required options.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.default is None
            or action.default is argparse.SUPPRESS
            or action.required
            or "default" in text.lower()
        ):
            return action.help
        return super()._get_help_string(action)


class RawDescriptionDefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """:class:`DefaultsHelpFormatter` that keeps the description's line breaks."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line errors (exit 2), ``--debug``, each default said once.

    Sub-parsers (``add_subparsers``) are of this class too.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.add_help:
            self.add_argument("--debug", action=_DebugAction)

    def error(self, message: str) -> NoReturn:
        """Print ``error: <message> (see: PROG --help)`` and exit 2."""
        self.exit(USAGE, f"error: {one_line(message)} (see: {self.prog} --help)\n")


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 1 to 65535, or 0 for any free port.

    >>> port_number("8000")
    8000
    >>> port_number("99999")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 99999 is not a port: use 1 to 65535 (or 0 for any free one)
    """
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number: use 1 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1 to 65535 (or 0 for any free one)")
    return port


def check_backend(backend: str) -> None:
    """Raise :class:`UsageError` unless ``backend`` is a retrieval backend or a server URL."""
    from searchenv.retrieval.cache import BACKEND_CHOICES
    from searchenv.retrieval.remote import is_remote_backend

    if backend not in BACKEND_CHOICES and not is_remote_backend(backend):
        raise UsageError(
            f"unknown backend {backend!r}: use {', '.join(sorted(BACKEND_CHOICES))} "
            "or a searchenv serve URL such as http://127.0.0.1:8000"
        )


__all__ = [
    "DEBUG_ENV",
    "ArgumentParser",
    "CommandError",
    "DefaultsHelpFormatter",
    "RawDescriptionDefaultsHelpFormatter",
    "UsageError",
    "check_backend",
    "debug_enabled",
    "exit_code_of",
    "message_of",
    "one_line",
    "port_number",
    "reports_errors",
    "user_input",
]
