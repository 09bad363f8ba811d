"""Label selectors, parsed and matched as the API server does.

The embedded store must accept and refuse the same selectors as the API server,
and select the same objects. So this is a port of apimachinery's
``pkg/labels/selector.go`` (Kubernetes 1.37): the same lexer, the same
recursive descent, the same validation of keys and values, and the same error
messages. A selector the server cannot parse is a 400 ``BadRequest`` there;
here it raises ``InvalidObject`` carrying that Status.

Syntax: requirements separated by commas, all of which must hold::

    key=value  key==value  key!=value  key in (a,b)  key notin (a)  key  !key
    key>1  key<10

Whitespace between tokens is ignored; values may be empty (``key=``, ``key in ()``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from remstate.errors import ApiStatus, InvalidObject
from remstate.store.apivalidation import ErrorType, FieldError, is_label_value, is_qualified_name

__all__ = ["EVERYTHING", "Operator", "Requirement", "Selector", "matches", "parse"]


class Operator(enum.StrEnum):
    """``selection.Operator``."""

    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(value: str) -> int | None:
    # strconv.ParseInt(value, 10, 64): an optional sign and decimal digits, in range.
    if not _INT64.fullmatch(value):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a selector: a key, an operator and its values (sorted)."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether these labels satisfy the requirement (``Requirement.Matches``)."""
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return (self.key in labels) is (op is Operator.EXISTS)
        return self._compare(labels)

    def _compare(self, labels: Mapping[str, str]) -> bool:
        # Gt and Lt: both sides must be integers, or nothing matches.
        have = _parse_int64(labels[self.key]) if self.key in labels else None
        want = _parse_int64(self.values[0]) if len(self.values) == 1 else None
        if have is None or want is None:
            return False
        return have > want if self.operator is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        prefix = "!" if self.operator is Operator.DOES_NOT_EXIST else ""
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return prefix + self.key
        symbol = {
            Operator.IN: " in ",
            Operator.NOT_IN: " notin ",
            Operator.GREATER_THAN: ">",
            Operator.LESS_THAN: "<",
        }.get(self.operator, str(self.operator))
        values = ",".join(sorted(self.values))
        if self.operator in (Operator.IN, Operator.NOT_IN):
            values = f"({values})"
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True, slots=True)
class Selector:
    """Requirements that must all hold; with none, the selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected."""
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING: Final = Selector()


def parse(selector: str) -> Selector:
    """Parse a label selector as the API server does.

    Raises:
        InvalidObject: the selector cannot be parsed, or names a key or value that is
            not valid. Its Status is the server's: 400 ``BadRequest``.
    """
    try:
        requirements = _Parser(selector).parse()
    except _SyntaxError as e:
        message = str(e)
        status = ApiStatus(code=400, reason="BadRequest", message=message)
        raise InvalidObject(message, status=status) from None
    return Selector(tuple(sorted(requirements, key=lambda r: r.key)))


def matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy ``selector`` (parsed each time; see ``parse``).

    Raises:
        InvalidObject: as for ``parse``.
    """
    return parse(selector).matches(labels)


# --- the port of the lexer and parser -------------------------------------------------------


class _SyntaxError(Exception):
    """A selector the server would refuse; the text is the server's message."""


class _Token(enum.Enum):
    ERROR = enum.auto()
    END = enum.auto()
    CLOSED_PAR = enum.auto()
    COMMA = enum.auto()
    DOES_NOT_EXIST = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER_THAN = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS_THAN = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAR = enum.auto()


_STRING_TO_TOKEN: Final = {
    ")": _Token.CLOSED_PAR,
    ",": _Token.COMMA,
    "!": _Token.DOES_NOT_EXIST,
    "==": _Token.DOUBLE_EQUALS,
    "=": _Token.EQUALS,
    ">": _Token.GREATER_THAN,
    "in": _Token.IN,
    "<": _Token.LESS_THAN,
    "!=": _Token.NOT_EQUALS,
    "notin": _Token.NOT_IN,
    "(": _Token.OPEN_PAR,
}
_SPECIAL: Final = frozenset("=!(),><")
_WHITESPACE: Final = frozenset(" \t\r\n")
_BINARY_OPERATORS: Final = "in, notin, =, ==, !=, gt, lt"
# Go's lexer reads a NUL byte past the end; a NUL inside the text ends it the same way.
_NUL: Final = "\x00"


class _Lexer:
    def __init__(self, text: str) -> None:
        self._s = text
        self._pos = 0

    def _read(self) -> str:
        ch = _NUL
        if self._pos < len(self._s):
            ch = self._s[self._pos]
            self._pos += 1
        return ch

    def _unread(self) -> None:
        self._pos -= 1

    def _scan_id_or_keyword(self) -> tuple[_Token, str]:
        buffer = []
        while True:
            ch = self._read()
            if ch == _NUL:
                break
            if ch in _SPECIAL or ch in _WHITESPACE:
                self._unread()
                break
            buffer.append(ch)
        text = "".join(buffer)
        return _STRING_TO_TOKEN.get(text, _Token.IDENTIFIER), text

    def _scan_special_symbol(self) -> tuple[_Token, str]:
        last: tuple[_Token, str] | None = None
        buffer = ""
        while True:
            ch = self._read()
            if ch == _NUL:
                break
            if ch in _SPECIAL:
                buffer += ch
                if buffer in _STRING_TO_TOKEN:
                    last = (_STRING_TO_TOKEN[buffer], buffer)
                elif last is not None:
                    self._unread()
                    break
            else:
                self._unread()
                break
        if last is None:
            return _Token.ERROR, f"error expected: keyword found '{buffer}'"
        return last

    def lex(self) -> tuple[_Token, str]:
        ch = self._read()
        while ch in _WHITESPACE:
            ch = self._read()
        if ch == _NUL:
            return _Token.END, ""
        self._unread()
        if ch in _SPECIAL:
            return self._scan_special_symbol()
        return self._scan_id_or_keyword()


class _Parser:
    def __init__(self, text: str) -> None:
        lexer = _Lexer(text)
        self._items: list[tuple[_Token, str]] = []
        while True:
            item = lexer.lex()
            self._items.append(item)
            if item[0] is _Token.END:
                break
        self._pos = 0

    def _lookahead(self, values: bool) -> tuple[_Token, str]:
        tok, lit = self._items[self._pos]
        if values and tok in (_Token.IN, _Token.NOT_IN):
            tok = _Token.IDENTIFIER
        return tok, lit

    def _consume(self, values: bool) -> tuple[_Token, str]:
        item = self._lookahead(values)
        self._pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self._lookahead(values=True)
            if tok in (_Token.IDENTIFIER, _Token.DOES_NOT_EXIST):
                try:
                    requirements.append(self._parse_requirement())
                except _SyntaxError as e:
                    raise _SyntaxError(f"unable to parse requirement: {e}") from None
                tok, lit = self._consume(values=True)
                if tok is _Token.END:
                    return requirements
                if tok is _Token.COMMA:
                    tok2, lit2 = self._lookahead(values=True)
                    if tok2 not in (_Token.IDENTIFIER, _Token.DOES_NOT_EXIST):
                        raise _SyntaxError(f"found '{lit2}', expected: identifier after ','")
                else:
                    raise _SyntaxError(f"found '{lit}', expected: ',' or 'end of string'")
            elif tok is _Token.END:
                return requirements
            else:
                raise _SyntaxError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _parse_requirement(self) -> Requirement:
        key, operator = self._parse_key_and_infer_operator()
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return _new_requirement(key, operator, [])
        operator = self._parse_operator()
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self._parse_values()
        else:
            values = self._parse_exact_value()
        return _new_requirement(key, operator, sorted(values))

    def _parse_key_and_infer_operator(self) -> tuple[str, Operator | None]:
        operator: Operator | None = None
        tok, literal = self._consume(values=True)
        if tok is _Token.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            tok, literal = self._consume(values=True)
        if tok is not _Token.IDENTIFIER:
            raise _SyntaxError(f"found '{literal}', expected: identifier")
        # The parser validates the key with no field path: the server prints "<nil>".
        key_error = _validate_label_key(literal, "<nil>")
        if key_error is not None:
            raise _SyntaxError(str(key_error))
        at_end = self._lookahead(values=True)[0] in (_Token.END, _Token.COMMA)
        if at_end and operator is not Operator.DOES_NOT_EXIST:
            operator = Operator.EXISTS
        return literal, operator

    def _parse_operator(self) -> Operator:
        tok, lit = self._consume(values=False)
        operator = {
            _Token.IN: Operator.IN,
            _Token.EQUALS: Operator.EQUALS,
            _Token.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
            _Token.GREATER_THAN: Operator.GREATER_THAN,
            _Token.LESS_THAN: Operator.LESS_THAN,
            _Token.NOT_IN: Operator.NOT_IN,
            _Token.NOT_EQUALS: Operator.NOT_EQUALS,
        }.get(tok)
        if operator is None:
            raise _SyntaxError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        return operator

    def _parse_values(self) -> set[str]:
        tok, lit = self._consume(values=True)
        if tok is not _Token.OPEN_PAR:
            raise _SyntaxError(f"found '{lit}' expected: '('")
        tok, lit = self._lookahead(values=True)
        if tok in (_Token.IDENTIFIER, _Token.COMMA):
            values = self._parse_identifiers_list()
            if self._consume(values=True)[0] is not _Token.CLOSED_PAR:
                raise _SyntaxError(f"found '{lit}', expected: ')'")
            return values
        if tok is _Token.CLOSED_PAR:  # "()"
            self._consume(values=True)
            return {""}
        raise _SyntaxError(f"found '{lit}', expected: ',', ')' or identifier")

    def _parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._consume(values=True)
            if tok is _Token.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self._lookahead(values=True)
                if tok2 is _Token.COMMA:
                    continue
                if tok2 is _Token.CLOSED_PAR:
                    return values
                raise _SyntaxError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Token.COMMA:  # "(," ",," ",)" all stand for an empty value
                if not values:
                    values.add("")
                tok2, _ = self._lookahead(values=True)
                if tok2 is _Token.CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 is _Token.COMMA:
                    values.add("")
                continue
            raise _SyntaxError(f"found '{lit}', expected: ',', or identifier")

    def _parse_exact_value(self) -> set[str]:
        tok, _ = self._lookahead(values=True)
        if tok in (_Token.END, _Token.COMMA):
            return {""}
        tok, lit = self._consume(values=True)
        if tok is _Token.IDENTIFIER:
            return {lit}
        raise _SyntaxError(f"found '{lit}', expected: identifier")


def _validate_label_key(key: str, path: str) -> FieldError | None:
    errs = is_qualified_name(key)
    return FieldError(ErrorType.INVALID, path, key, "; ".join(errs)) if errs else None


# Grade C on purpose: labels.NewRequirement's checks per operator, as the server has them.
def _new_requirement(key: str, operator: Operator, values: list[str]) -> Requirement:
    # labels.NewRequirement: every error is collected, then reported together.
    errs: list[FieldError] = []
    key_error = _validate_label_key(key, "key")
    if key_error is not None:
        errs.append(key_error)
    if operator in (Operator.IN, Operator.NOT_IN) and not values:
        errs.append(
            FieldError(
                ErrorType.INVALID,
                "values",
                values,
                "for 'in', 'notin' operators, values set can't be empty",
            )
        )
    elif operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        if len(values) != 1:
            errs.append(
                FieldError(
                    ErrorType.INVALID,
                    "values",
                    values,
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                )
            )
        errs.extend(
            FieldError(
                ErrorType.INVALID,
                f"values[{i}]",
                value,
                "for 'Gt', 'Lt' operators, the value must be an integer",
            )
            for i, value in enumerate(values)
            if _parse_int64(value) is None
        )
    for i, value in enumerate(values):
        value_errors = is_label_value(value)
        if value_errors:
            errs.append(
                FieldError(ErrorType.INVALID, f"values[{i}][{key}]", value, "; ".join(value_errors))
            )
    if errs:
        lines = list(dict.fromkeys(str(e) for e in errs))
        raise _SyntaxError(lines[0] if len(lines) == 1 else f"[{', '.join(lines)}]")
    return Requirement(key, operator, tuple(values))
