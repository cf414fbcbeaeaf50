r"""Reading JSONL files line by line, so that every problem is reported as ``file:line`` and a fix.

:func:`read_jsonl` yields one JSON object per non-blank line. What it rejects, each with a
:class:`JsonlFormatError` naming the file, the line and what to do:

- a byte sequence that is not UTF-8 (the byte and its column are named);
- a line that is not JSON, or is JSON but not an object;
- ``NaN`` / ``Infinity`` (not JSON, though Python's reader accepts them);
- a lone surrogate escape such as ``"\ud800"``: valid JSON syntax, but no UTF-8 text can hold it,
  so it would crash the first time the text is written or tokenized;
- a damaged gzip file.

What it normalizes, silently and by design: a UTF-8 byte-order mark at the start of the file
is dropped, blank lines are skipped, ``\r\n`` line ends are accepted, and a JSON number that is
not an integer (``1.0``, ``2.50``, ``1e3``) is kept as its source text (a :class:`JsonNumber`)
rather than turned into a float, so that ``1.0`` is never rewritten as ``1`` or ``2.50`` as
``2.5`` behind the user's back.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, TypeGuard, cast

PathLike = str | os.PathLike[str]

# A JSON \u escape of a UTF-16 surrogate half: only these can put a lone surrogate in a str.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JsonlFormatError(ValueError):
    """A JSONL file, or one of its lines, that does not hold what it must; the message names both."""


class JsonNumber(str):
    """A JSON number that is not an integer, kept as its source text (``"1.0"``, ``"2.50"``).

    It is a ``str`` so that answers keep the exact text their file gave; fields that need a
    number (``hops``) or a string (``question``) reject it.
    """

    __slots__ = ()


def is_text(value: object) -> TypeGuard[str]:
    """Whether ``value`` was a JSON string (not a number kept as text).

    >>> is_text("Paris"), is_text(JsonNumber("1.0")), is_text(3)
    (True, False, False)
    """
    return isinstance(value, str) and not isinstance(value, JsonNumber)


def plain_number(text: str) -> str | None:
    """The plain decimal form of a JSON number's text when it differs from the text, else None.

    ``1.0`` is also the integer ``1``, ``2.50`` the decimal ``2.5`` and ``1e3`` the integer
    ``1000``; an answer given as such a number accepts both spellings.

    >>> plain_number("1.0"), plain_number("2.50"), plain_number("1e3"), plain_number("2.5")
    ('1', '2.5', '1000', None)
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    plain = str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")
    # 1e400 as 401 digits is no answer anyone writes: keep only short plain forms.
    return plain if plain != text and len(plain) <= 40 else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON; write the value as a string or a finite number")


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _decode(raw: bytes, where: str, first: bool) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JsonlFormatError(
            f"{where}: not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "re-save the file as UTF-8"
        ) from None
    return line.removeprefix("\ufeff") if first else line


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line, parse_float=JsonNumber, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise JsonlFormatError(
            f"{where}: invalid JSON ({error.msg} at column {error.colno}); each line must be one JSON object"
        ) from None
    except ValueError as error:  # NaN / Infinity (from _reject_constant), or an integer too long
        raise JsonlFormatError(f"{where}: {error}") from None
    except RecursionError:
        raise JsonlFormatError(f"{where}: JSON nested too deeply to read; flatten the record") from None
    if not isinstance(record, dict):
        raise JsonlFormatError(
            f"{where}: expected a JSON object, got {type(record).__name__}; each line must be one object"
        )
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            half = error.object[error.start : error.end].encode("utf-16", "surrogatepass")[2:]
            raise JsonlFormatError(
                f"{where}: lone surrogate escape \\u{int.from_bytes(half, 'little'):04x} (half of a UTF-16 "
                "pair without its other half); no UTF-8 text can hold it: fix or drop the escape"
            ) from None
    return record


def read_jsonl(path: PathLike) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``("file:line", record)`` for every non-blank line of a ``.jsonl`` or ``.jsonl.gz`` file.

    Args:
        path: The file.

    Yields:
        The line's location and its JSON object.

    Raises:
        JsonlFormatError: the file is missing or damaged, or a line is not a UTF-8 JSON object
            (see the module docstring for each case).
    """
    path = Path(path)
    if not path.is_file():
        raise JsonlFormatError(f"{path}: no such file (relative paths start at {Path.cwd()}); check the path")
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                where = f"{path}:{number}"
                line = _decode(raw, where, number == 1)
                if line.strip():
                    yield where, _parse(line, where)
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise JsonlFormatError(
            f"{path}: damaged gzip file ({error}); recompress it or give the .jsonl"
        ) from None


__all__ = ["JsonNumber", "JsonlFormatError", "is_text", "plain_number", "read_jsonl"]
