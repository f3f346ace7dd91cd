"""Logging set-up: stderr or a file (never stdout, which belongs to the console sink), text or
JSON lines, and a rate limit so a message repeated in a loop cannot flood the log."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

#: Repeats of one message template per logger allowed per window before suppression.
BURST = 5
WINDOW_SECONDS = 10.0
#: Keys (message kinds) a rate limiter tracks at once; see :class:`RateLimiter`.
MAX_KEYS = 10_000
#: ``logger.info(..., extra=NOT_RATE_LIMITED)``: summaries (stats, final counts, losses),
#: one line per node by design, which the limiter must never swallow.
NOT_RATE_LIMITED = {"rate_limit": False}


class RateLimiter:
    """Per key: ``burst`` events pass per ``window`` seconds (the window opens with the first),
    the others are counted; the first to pass after the window learns how many were held back.

    The one limiting algorithm behind both :class:`RateLimitedLog` (hot call sites, checked
    before a ``LogRecord`` exists) and :class:`RateLimitFilter` (the handler's safety net for
    every other call site).

    Bounded with any number of keys: the table holds at most ``max_keys`` keys, least
    recently used first out. A key is only pushed out once its window is over (its own
    held-back count goes with it); while all ``max_keys`` keys are inside their window a new
    key is held back too, counted in :attr:`untracked` (:meth:`take_untracked`), so the lines
    that pass stay at most ``max_keys * burst`` per window however many keys there are.
    """

    def __init__(self, burst: int, window: float, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        #: key -> [window_start, n, held back], least recently used first
        self._state: OrderedDict[Hashable, list[float]] = OrderedDict()
        #: Events held back because the table was full of keys inside their window.
        self.untracked = 0

    def __len__(self) -> int:
        return len(self._state)

    def admit(self, key: Hashable) -> int | None:
        """None: hold this one back (counted). Otherwise it passes, and the number is how many
        of this key were held back since the last one that passed after a window."""
        now = self.clock()
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self.max_keys:
                oldest = next(iter(self._state.values()))
                if now - oldest[0] < self.window:  # every key was seen within its window
                    self.untracked += 1
                    return None
                self._state.popitem(last=False)
            self._state[key] = [now, 1, 0]
            return 0
        self._state.move_to_end(key)
        if now - state[0] >= self.window:
            suppressed = int(state[2])
            state[:] = [now, 1, 0]
            return suppressed
        state[1] += 1
        if state[1] <= self.burst:
            return 0
        state[2] += 1
        return None

    def take_untracked(self) -> int:
        """How many events were held back without a key since the last call."""
        n, self.untracked = self.untracked, 0
        return n


def _untracked_note(n: int, max_keys: int) -> str:
    return (f" ({n} other messages suppressed while {max_keys} kinds of message were "
            "being limited)")


class RateLimitFilter(logging.Filter):
    """Let ``BURST`` records of one (logger, template) through per window, then suppress; the
    next record after the window carries a note with how many were suppressed. Records with
    ``extra=NOT_RATE_LIMITED`` always pass."""

    def __init__(self, burst: int = BURST, window: float = WINDOW_SECONDS, *,
                 max_keys: int = MAX_KEYS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.limiter = RateLimiter(burst, window, max_keys=max_keys, clock=clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rate_limit", True) is False:
            return True
        suppressed = self.limiter.admit((record.name, record.msg))
        if suppressed is None:
            return False
        if suppressed:
            record.msg = f"{record.msg} (suppressed {suppressed} similar messages)"
        untracked = self.limiter.take_untracked()
        if untracked:
            record.msg = f"{record.msg}{_untracked_note(untracked, self.limiter.max_keys)}"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", file: str | None = None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(file, encoding="utf-8") if file else logging.StreamHandler(sys.stderr)
    )
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class RateLimitedLog:
    """At most one log line per key per ``interval`` seconds, noting how many were suppressed.

    For call sites on a hot path (malformed exchange messages, late trades, slow clients): a
    broken upstream can produce thousands of lines a second, and checking a dict here is far
    cheaper than building a ``LogRecord`` that a handler filter would then discard. It is the
    same :class:`RateLimiter` as the handler's filter, with a burst of one and keys chosen by
    the caller (a template shared by many symbols can still be told apart); what it lets
    through still meets that filter, which bounds the total per template.
    """

    def __init__(self, logger: logging.Logger, interval: float = WINDOW_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.limiter = RateLimiter(1, interval, clock=clock)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        suppressed = self.limiter.admit(key)
        if suppressed is None:
            return
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        untracked = self.limiter.take_untracked()
        if untracked:
            msg += _untracked_note(untracked, self.limiter.max_keys).replace("%", "%%")
        self.logger.log(level, msg, *args)

    def debug(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.DEBUG, key, msg, *args)

    def info(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.INFO, key, msg, *args)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, key, msg, *args)


# -- credentials in URLs ---------------------------------------------------------------------

#: Query parameters that carry a credential (``redis://h/0?password=...``).
_SECRET_PARAM = re.compile(r"(^|_)(password|passwd|pass|pwd|secret|token|auth|auth_key|api_key|"
                           r"apikey|key|access_token)$", re.IGNORECASE)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def url_secret(value: str) -> str | None:
    """What credential a URL carries (``"a password"``, ``"query parameter 'token'"``), or None
    for a URL without one and any string that is not a URL."""
    if not _URL.match(value):
        return None
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return None
    if password:
        return "a password"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_PARAM.search(name):
            return f"query parameter {name!r}"
    return None


def redact_url(value: str) -> str:
    """``value`` with the password of its user info and every credential query parameter
    replaced by ``***``; for every URL that goes into a log line or an error message."""
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = "&".join(f"{k}=***" if _SECRET_PARAM.search(k) else f"{k}={v}"
                             for k, v in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
