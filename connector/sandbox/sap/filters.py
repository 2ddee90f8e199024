"""SAP simulator: the $filter compiler, $orderby and $select parsing."""

from __future__ import annotations

import operator
import re

from .schema import DATE, INT, INVALID_FILTER_MESSAGE, NUM, STR, TIME, SapError, _Type
from .values import _as_decimal, _parse_date_text, _parse_time_text

# ---------------------------------------------------------------------------------------------------------------
# $filter compiler
# ---------------------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"""\s*(?:
    (?P<str>'(?:[^']|'')*')
  | (?P<typed>(?:datetimeoffset|datetime|date|time)'(?:[^']|'')*')
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?[mMdDfFlL]?)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_/.]*)
)""", re.VERBOSE)

_COMPARISONS = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge,
                "lt": operator.lt, "le": operator.le}
_FLIPPED = {"eq": "eq", "ne": "ne", "gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}
_STRING_FUNCTIONS = {"startswith", "endswith", "contains", "substringof"}


def _invalid_filter() -> SapError:
    return SapError(400, 201, INVALID_FILTER_MESSAGE)


def _invalid_property(name: str) -> SapError:
    return SapError(400, 201, f"Property '{name}' is invalid")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None or match.end() == pos:
            raise _invalid_filter()
        tokens.append((match.lastgroup, match.group(match.lastgroup)))
        pos = match.end()
    return tokens


class _FilterCompiler:
    """Recursive-descent parser turning a $filter string into a predicate `row -> bool`.

    Grammar: or := and ('or' and)*; and := unary ('and' unary)*; unary := 'not' unary | primary;
    primary := '(' or ')' | operand op operand | boolean function [eq|ne true|false].
    """

    def __init__(self, text: str, etype: _Type, case_insensitive: bool):
        self.tokens = _tokenize(text)
        self.pos = 0
        self.etype = etype
        self.ci = case_insensitive

    def compile(self):
        if not self.tokens:
            raise _invalid_filter()
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise _invalid_filter()
        return predicate

    # -- token helpers
    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self):
        token = self._peek()
        if token[0] is None:
            raise _invalid_filter()
        self.pos += 1
        return token

    def _accept_word(self, word: str) -> bool:
        if self._peek() == ("name", word):
            self.pos += 1
            return True
        return False

    def _expect(self, kind: str):
        if self._take()[0] != kind:
            raise _invalid_filter()

    # -- grammar
    def _or(self):
        left = self._and()
        while self._accept_word("or"):
            right = self._and()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def _and(self):
        left = self._unary()
        while self._accept_word("and"):
            right = self._unary()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def _unary(self):
        if self._accept_word("not"):
            inner = self._unary()
            return lambda row: not inner(row)
        return self._primary()

    def _primary(self):
        if self._peek()[0] == "lp":
            self.pos += 1
            inner = self._or()
            self._expect("rp")
            return inner
        left = self._operand()
        kind, text = self._peek()
        if kind == "name" and text in _COMPARISONS:
            self.pos += 1
            return self._comparison(left, text, self._operand())
        if left[0] == "func":
            return left[1]
        raise _invalid_filter()

    def _operand(self):
        kind, text = self._take()
        if kind == "name":
            if text in _STRING_FUNCTIONS and self._peek()[0] == "lp":
                return ("func", self._function(text))
            if text in ("true", "false"):
                return ("lit", "bool", text == "true")
            if text == "null":
                return ("lit", "null", None)
            if text in _COMPARISONS or text in ("and", "or", "not"):
                raise _invalid_filter()
            self._property_kind(text)
            return ("prop", text)
        if kind == "str":
            return ("lit", "str", text[1:-1].replace("''", "'"))
        if kind == "typed":
            return ("lit", "str", text[text.index("'") + 1:-1].replace("''", "'"))
        if kind in ("date", "time", "num"):
            return ("lit", kind, text)
        raise _invalid_filter()

    def _property_kind(self, name: str):
        kind = self.etype.fields.get(name)
        if kind is None:
            raise _invalid_property(name)
        return kind

    # -- building predicates
    def _function(self, name: str):
        self._expect("lp")
        first = self._operand()
        self._expect("comma")
        second = self._operand()
        self._expect("rp")
        # substringof(needle, Property) is the V3 order; accept either order for all four functions.
        prop, lit = (first, second) if first[0] == "prop" else (second, first)
        if prop[0] != "prop" or lit[0] != "lit" or lit[1] not in ("str", "num"):
            raise _invalid_filter()
        if self._property_kind(prop[1]) != STR:
            raise _invalid_filter()
        needle = lit[2].lower() if self.ci else lit[2]
        method = {"startswith": str.startswith, "endswith": str.endswith,
                  "contains": str.__contains__, "substringof": str.__contains__}[name]
        prop_name, ci = prop[1], self.ci

        def predicate(row):
            value = row.get(prop_name)
            if value is None:
                return False
            return method(value.lower() if ci else value, needle)

        return predicate

    def _comparison(self, left, op: str, right):
        if left[0] == "func" or right[0] == "func":
            return self._function_comparison(left, op, right)
        if left[0] == "lit" and right[0] == "prop":
            left, right, op = right, left, _FLIPPED[op]
        if left[0] != "prop" or right[0] != "lit":
            raise _invalid_filter()
        prop = left[1]
        kind = self._property_kind(prop)
        if right[1] == "null":
            if op not in ("eq", "ne"):
                raise _invalid_filter()
            return (lambda row: row.get(prop) is None) if op == "eq" else (lambda row: row.get(prop) is not None)
        return self._value_comparison(prop, kind, _COMPARISONS[op], self._coerce(kind, right))

    def _function_comparison(self, left, op, right):
        func, lit = (left, right) if left[0] == "func" else (right, left)
        if func[0] != "func" or lit[0] != "lit" or lit[1] != "bool" or op not in ("eq", "ne"):
            raise _invalid_filter()
        predicate = func[1]
        if (op == "eq") == lit[2]:
            return predicate
        return lambda row: not predicate(row)

    def _coerce(self, kind, literal):
        tag, text = literal[1], literal[2]
        if tag == "bool":
            raise _invalid_filter()
        if kind == STR:
            return text.lower() if self.ci else text
        if kind in (INT, NUM):
            value = _as_decimal(text.rstrip("mMdDfFlL"))
        elif kind == DATE:
            value = _parse_date_text(text)
        elif kind == TIME:
            parsed = _parse_time_text(text)
            value = (parsed.hour, parsed.minute) if parsed else None
        else:
            value = kind.canonical(text)
        if value is None:
            raise _invalid_filter()
        return value

    def _value_comparison(self, prop, kind, compare, value):
        if kind == TIME:
            # Only hour and minute count for time properties (SAP guide); both sides truncated to the minute.
            def predicate(row):
                v = row.get(prop)
                return v is not None and compare((v.hour, v.minute), value)
        elif kind == STR and self.ci:
            def predicate(row):
                v = row.get(prop)
                return v is not None and compare(v.lower(), value)
        else:
            def predicate(row):
                v = row.get(prop)
                return v is not None and compare(v, value)
        return predicate


def _parse_orderby(text: str, etype: _Type) -> list[tuple[str, bool]]:
    keys = []
    for part in text.split(","):
        bits = part.split()
        if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1].lower() not in ("asc", "desc")):
            raise SapError(400, 201, "Query string error - Invalid orderby condition")
        if bits[0] not in etype.fields:
            raise _invalid_property(bits[0])
        keys.append((bits[0], len(bits) == 2 and bits[1].lower() == "desc"))
    return keys


def _parse_select(text: str, etype: _Type) -> frozenset | None:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or "*" in names:
        return None
    for name in names:
        if not etype.knows(name):
            raise _invalid_property(name)
    return frozenset(names)
