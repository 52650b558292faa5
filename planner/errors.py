"""Bad user input, and the error boundary both CLIs share.

User errors (PlannerInputError) exit 2 with one line naming the file, column, field or flag; a write the disk refused
(WriteFailed: full, over quota, an I/O error) exits 1 with one line naming the flag and file. Anything else is a bug:
it exits 1 with one line saying where its traceback was written, or that it could not be written. Nothing a user
types reaches stderr as a traceback.
"""
from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Characters str.splitlines() breaks at, written as escapes when they are inside a value (a path with a newline)
_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}
MAX_COUNT = 2**62  # tokens, steps and other counts: products of them still fit the registry's int64 columns
MAX_LINE = 400  # characters of an error message: a 5,000-character value must not flood the terminal


class PlannerInputError(ValueError):
    """Bad input from a user: a file, a column, a field or a flag. The message names which, and what is wrong."""


class WriteFailed(RuntimeError):
    """The disk refused a write the input was right to ask for (full, over quota, an I/O error): not bad input."""


DISK_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG}


def write_error(exc: OSError, flag: str, path) -> Exception:
    """The one-line error for a write to `path` (given by `flag`) that raised `exc`: WriteFailed when the disk
    failed, PlannerInputError when the path cannot be written (no such folder, read-only, a folder)."""
    kind = WriteFailed if exc.errno in DISK_FAILURES else PlannerInputError
    return kind(f"{flag} {path}: cannot write ({exc.strerror or one_line(exc)})")


def one_line(exc: BaseException | str) -> str:
    """The first non-blank line of a message (pydantic's first error for a ValidationError), capped in length."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and not isinstance(exc, PlannerInputError):  # pydantic: one error, not the whole dump
        try:
            first = errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            text = f"{where + ': ' if where else ''}{first['msg'].removeprefix('Value error, ')}"
        except Exception:  # noqa: BLE001 -- fall back to the text
            text = str(exc)
    elif isinstance(exc, (PlannerInputError, WriteFailed)):  # our own one line: a newline is in a path, not a break
        text = str(exc).strip().translate(_BREAKS)
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__ if isinstance(exc, BaseException) else "(no message)"
    return line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."


def say(line: str) -> None:
    """Print one line to stderr; a closed or broken stderr is not a second error."""
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001
        pass


def write_details(exc: BaseException, folders) -> tuple[Path | None, str]:
    """Append the traceback to `error.log` in the first folder that takes it (else a temp file).

    Returns (path, "") or (None, why none could be written)."""
    text = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} argv {sys.argv!r}\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    why = "no folder to write to"
    for folder in [*folders, None]:
        try:
            if folder is None:
                fd, name = tempfile.mkstemp(prefix="sparseplan-error-", suffix=".log")
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                return Path(name), ""
            path = Path(folder) / "error.log"
            with open(path, "a") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            return path, ""
        except Exception as err:  # noqa: BLE001 -- read-only, full disk, not a folder: try the next place
            why = getattr(err, "strerror", None) or one_line(err)
    return None, why


def details_note(exc: BaseException, folders) -> str:
    """Write the traceback (see write_details) and say where it went, or why it could not be written."""
    path, why = write_details(exc, folders)
    return f"traceback in {path}" if path else f"the traceback could not be written: {why}"


def internal_line(exc: BaseException, folders) -> str:
    return f"error: internal error: {type(exc).__name__}: {one_line(exc)} ({details_note(exc, folders)})"


def guarded(body, folders=lambda: (), user_errors: tuple = (PlannerInputError,)) -> int:
    """Run a CLI body: user errors exit 2 with one line, a failed write 1, SIGINT 130, anything else 1 with one line. Never raises
    (except SystemExit from the body itself). `folders()` names where an internal error's traceback may go."""
    try:
        return body()
    except BrokenPipeError:  # `... | head`: the reader left; nothing to say, and Python must not flush again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except Exception:  # noqa: BLE001
            pass
        return 141  # 128 + SIGPIPE, as a shell tool killed by the signal
    except WriteFailed as exc:
        say(f"error: {one_line(exc)}")
        return 1
    except user_errors as exc:
        say(f"error: {one_line(exc)}")
        return 2
    except KeyboardInterrupt:
        say("error: interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 -- the boundary: RecursionError and MemoryError included
        try:
            candidates = list(folders())
        except Exception:  # noqa: BLE001
            candidates = []
        try:
            say(internal_line(exc, candidates))
        except Exception:  # noqa: BLE001 -- formatting itself failed (e.g. out of memory)
            say(f"error: internal error: {type(exc).__name__} (no details could be written)")
        return 1
