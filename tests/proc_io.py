"""Reading a child process's output with a deadline: a bare ``readline()`` on a pipe waits
forever when the child hangs without printing, and the test hangs instead of failing."""

from __future__ import annotations

import threading
from typing import IO, AnyStr


def readline_within(stream: IO[AnyStr], timeout: float, what: str = "the child") -> AnyStr:
    """One line from ``stream`` (text or bytes), or AssertionError after ``timeout`` seconds.

    The read runs in a daemon thread: on a timeout it stays blocked until the caller kills
    the child (which ends the pipe), so nothing leaks past the test's own cleanup.
    """
    result: list[AnyStr] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            result.append(stream.readline())
        except BaseException as exc:  # reported in the caller's thread
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise AssertionError(f"{what} printed no complete line within {timeout} s")
    if errors:
        raise errors[0]
    return result[0]
