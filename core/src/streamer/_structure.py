"""The strict converter: cattrs into attrs classes, collecting every error with its path.

No silent ``"1" -> 1``, no string iterated as a list of characters, no NaN; field validators
run one by one after structuring so that each failure is reported.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.v import transform_error

from streamer._api import Validates
from streamer._config_values import shown


def describe_value(value: Any) -> str:
    return shown(value) if not isinstance(value, dict) else "a table"


class _Expected(TypeError):
    pass


def _expect(ok: bool, what: str, value: Any) -> None:
    if not ok:
        raise _Expected(f"expected {what}, got {describe_value(value)}")


def _is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def _is_list(t: Any) -> bool:
    return t in (list, tuple) or get_origin(t) in (list, tuple)


def make_converter() -> cattrs.Converter:
    """cattrs, strict: no silent ``"1" -> 1``, no string iterated as a list of characters."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def s_int(v: Any, _: Any) -> int:
        _expect(isinstance(v, int) and not isinstance(v, bool), "an integer", v)
        return int(v)

    def s_float(v: Any, _: Any) -> float:
        _expect(isinstance(v, (int, float)) and not isinstance(v, bool), "a number", v)
        _expect(math.isfinite(v), "a finite number", v)
        return float(v)

    def s_str(v: Any, _: Any) -> str:
        _expect(isinstance(v, str), "a string", v)
        return str(v)

    def s_bool(v: Any, _: Any) -> bool:
        _expect(isinstance(v, bool), "true or false", v)
        return bool(v)

    def s_literal(v: Any, t: Any) -> Any:
        choices = get_args(t)
        _expect(v in choices and type(v) in {type(c) for c in choices},
                "one of " + ", ".join(repr(c) for c in choices), v)
        return v

    def s_list(v: Any, t: Any) -> Any:
        _expect(isinstance(v, list), "a list", v)
        args = get_args(t)
        elem = args[0] if args else Any
        out, errors = [], []
        for i, item in enumerate(v):
            try:
                out.append(item if elem is Any else conv.structure(item, elem))
            except Exception as exc:
                exc.__notes__ = [  # type: ignore[attr-defined]
                    *getattr(exc, "__notes__", []),
                    IterableValidationNote(f"Structuring @ index {i}", i, elem),
                ]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {t!r}", errors, t)
        return tuple(out) if (t is tuple or get_origin(t) is tuple) else out

    conv.register_structure_hook(int, s_int)
    conv.register_structure_hook(float, s_float)
    conv.register_structure_hook(str, s_str)
    conv.register_structure_hook(bool, s_bool)
    conv.register_structure_hook_func(_is_literal, s_literal)
    conv.register_structure_hook_func(_is_list, s_list)
    return conv


_converter = make_converter()


def _format_exception(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = user_keys(exc.cl)
        keys = ", ".join(sorted(exc.extra_fields))
        guesses = [f"did you mean `{match[0]}` for `{key}`?" if len(exc.extra_fields) > 1
                   else f"did you mean `{match[0]}`?"
                   for key in sorted(exc.extra_fields)
                   if (match := difflib.get_close_matches(key, allowed, n=1))]
        return (f"unknown key(s) {keys}; {' '.join(guesses) + ' ' if guesses else ''}"
                f"expected one of: {', '.join(allowed) or '(none)'}")
    if isinstance(exc, KeyError):
        return "required key is missing"
    if isinstance(exc, (_Expected, ValueError)):
        return str(exc)
    if isinstance(exc, TypeError) and "NoneType" not in str(exc):
        return str(exc)
    return f"invalid value ({exc})"


def user_keys(cls: type) -> list[str]:
    """The keys a user may write for ``cls``: its fields, less those set by the class itself
    (``init=False``) and retired ones (``metadata=RETIRED``, kept only to explain that they
    moved)."""
    if not attrs.has(cls):
        return []
    return [f.name for f in attrs.fields(cls) if f.init and not f.metadata.get("retired")]


def structure_collecting(data: Any, cls: type, path: str, filename: str, errors: list[str]) -> Any:
    """Structure with field validators off, then run every field validator on its own, so
    each range error is reported (with its path) rather than only the first."""
    try:
        with attrs.validators.disabled():
            result: Any = _converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError) as exc:
        for line in transform_error(exc, path=path, format_exception=_format_exception):
            message, _, where = line.rpartition(" @ ")
            errors.append(f"{filename}: {where}: {message}")
        _check_the_rest(exc, data, cls, path, filename, errors)
        return None
    except Exception as exc:
        errors.append(f"{filename}: {path}: {_format_exception(exc, cls)}")
        return None
    before = len(errors)
    _run_field_validators(result, path, filename, errors)
    return result if len(errors) == before else None


def _check_the_rest(exc: Exception, data: Any, cls: type, path: str, filename: str,
                    errors: list[str]) -> None:
    """After type errors in some options, still range-check the options that structured, so
    one mistyped option does not hide the range errors of the others on the same node."""
    if not (isinstance(exc, ClassValidationError) and isinstance(data, dict)):
        return
    bad = {note.name for sub in exc.exceptions for note in getattr(sub, "__notes__", [])
           if isinstance(note, AttributeValidationNote)}
    if not bad or any(isinstance(sub, ForbiddenExtraKeysError) for sub in exc.exceptions):
        # Unknown keys: the user may have misspelt one; the rest is checked once it is fixed.
        return
    try:
        with attrs.validators.disabled():
            rest: Any = _converter.structure({k: v for k, v in data.items() if k not in bad}, cls)
    except Exception:  # a required option among the bad ones, or a check across fields
        return
    _run_field_validators(rest, path, filename, errors, skip=bad)


def _run_field_validators(obj: Any, path: str, filename: str, errors: list[str],
                          skip: frozenset[str] | set[str] = frozenset()) -> None:
    if attrs.has(type(obj)):
        for field in attrs.fields(type(obj)):
            if field.name in skip:
                continue
            value = getattr(obj, field.name)
            where = f"{path}.{field.name}"
            if field.validator is not None:
                try:
                    field.validator(obj, field, value)
                except (ValueError, TypeError) as exc:
                    message = str(exc).removeprefix(f"{field.name}: ")
                    errors.append(f"{filename}: {where}: {message}")
            _run_field_validators(value, where, filename, errors)
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _run_field_validators(item, f"{path}[{i}]", filename, errors)


def run_validate(obj: Any, path: str, filename: str, environ: Mapping[str, str],
                  errors: list[str]) -> None:
    """The config class's own ``validate(environ)`` step, if it has one (:class:`Validates`)."""
    if not isinstance(obj, Validates):
        return
    try:
        problems: Iterable[str] = obj.validate(environ)
    except Exception as exc:  # a broken validate names itself rather than crash the check
        errors.append(f"{filename}: {path}: validate() failed: {type(exc).__name__}: {exc}")
        return
    errors.extend(f"{filename}: {path}: {problem}" for problem in problems)
