"""Split a symbol universe over N processes: ``shard = "K/N"`` (K counted from 1).

A symbol belongs to shard ``1 + H(symbol) mod N`` where ``H`` is the first 8 bytes of the
BLAKE2b digest of the upper-case symbol, read big-endian. The hash is stable across
processes, machines and Python versions (unlike ``hash()``, which is salted per process), so
every process with the same N agrees: the union of shards 1..N is the whole universe and each
symbol is in exactly one. Which symbols a shard holds does not depend on the rest of the
universe, so a listing that gains a symbol moves no other symbol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
#: Shards at most (a sanity bound on a config typo such as "1/1000000").
MAX_SHARDS = 1024


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)``; ``ValueError`` saying what is wrong."""
    match = _SHARD.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f'shard {text!r}: write "K/N", e.g. "1/2" (K counted from 1)')
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"shard {text!r}: N must be 1-{MAX_SHARDS}")
    if not 1 <= k <= n:
        raise ValueError(f"shard {text!r}: K must be 1-{n}")
    return k, n


def shard_of(symbol: str, n: int) -> int:
    """The shard (1..n) that ``symbol`` belongs to."""
    import hashlib  # imported here: it loads OpenSSL, and only a sharded source hashes

    digest = hashlib.blake2b(symbol.upper().encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % n


def shard_symbols(symbols: Iterable[str], shard: str | None) -> list[str]:
    """The symbols of ``shard`` (all of them when ``shard`` is None), order kept."""
    symbols = list(symbols)
    if shard is None:
        return symbols
    k, n = parse_shard(shard)
    return [s for s in symbols if shard_of(s, n) == k]
