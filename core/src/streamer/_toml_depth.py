"""How deep a TOML text nests its arrays and inline tables, found without parsing it.

tomllib parses nesting by recursion: a hostile or broken file of 100,000 ``[`` ends in a
RecursionError deep inside the parser, which costs a full stack and can leave the interpreter's
recursion bookkeeping in a bad state for the code that runs after it. Scanning the text first
refuses such a file before the parser sees it.
"""

from __future__ import annotations


def nesting_exceeds(text: str, limit: int) -> bool:
    """True when arrays / inline tables (and table headers) nest deeper than ``limit``.

    A lexical scan: brackets inside strings and comments do not count. What it cannot judge
    (an unterminated string, say) it leaves to the parser, which reports it properly.
    """
    depth = 0
    i = 0
    n = len(text)
    find = text.find
    while i < n:
        c = text[i]
        if c == "#":
            end = find("\n", i)
            i = n if end < 0 else end
        elif c == '"' or c == "'":
            i = _string_end(text, i, c)
        else:
            if c == "[" or c == "{":
                depth += 1
                if depth > limit:
                    return True
            elif c == "]" or c == "}":
                depth -= 1
            i += 1
    return False


def _string_end(text: str, i: int, quote: str) -> int:
    """The index just past the string opening at ``i`` (or where a one-line string breaks)."""
    n = len(text)
    closing = quote * 3 if text.startswith(quote * 3, i) else quote
    i += len(closing)
    escapes = quote == '"'
    while i < n:
        c = text[i]
        if escapes and c == "\\":
            i += 2
        elif text.startswith(closing, i):
            return i + len(closing)
        elif c == "\n" and len(closing) == 1:
            return i
        else:
            i += 1
    return n
