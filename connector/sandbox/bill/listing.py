"""BILL simulator: list filtering, sorting and paging."""

from __future__ import annotations

import base64
import hashlib
import operator
from decimal import Decimal, InvalidOperation

from .common import FILTER_OPS, ApiError, _canonical_time

# --------------------------------------------------------------------------------------------------------------
# list filtering / sorting / paging


def _resolve(item, path):
    """Leaf values at a dotted path; lists along the way fan out (any element may match)."""
    values = [item]
    for part in path:
        nxt = []
        for v in values:
            if isinstance(v, list):
                nxt.extend(x.get(part) for x in v if isinstance(x, dict))
            elif isinstance(v, dict):
                nxt.append(v.get(part))
        values = nxt
    flat = []
    for v in values:
        if isinstance(v, list):
            flat.extend(v)
        elif v is not None:
            flat.append(v)
    return flat


def _coerce(raw, sample, field):
    """Interpret a filter value with the type of the entity's field value."""
    try:
        if isinstance(sample, bool):
            return raw.strip().lower() == "true"
        if isinstance(sample, (int, Decimal)):
            return Decimal(raw.strip())
        if field.endswith("Time") and isinstance(sample, str):
            return _canonical_time(raw)
    except (InvalidOperation, ValueError):
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: filters, {raw}.") from None
    return raw


def _compare(op, value, target):
    if op in ("eq", "in", "ne", "nin"):
        return value == target
    if op == "sw":
        return isinstance(value, str) and value.startswith(target)
    try:
        return {"gt": value > target, "gte": value >= target, "lt": value < target, "lte": value <= target}[op]
    except TypeError:
        return False


class _Filter:
    def __init__(self, field, op, raw):
        self.field = field
        self.path = field.split(".")
        self.op = op
        self.raws = [v.strip() for v in raw.split(",")] if op in ("in", "nin") else [raw]
        self._cache = {}

    def _targets(self, sample):
        kind = type(sample)
        if kind not in self._cache:
            self._cache[kind] = [_coerce(r, sample, self.field) for r in self.raws]
        return self._cache[kind]

    def __call__(self, item):
        values = _resolve(item, self.path)
        hit = any(_compare(self.op, v, t) for v in values for t in self._targets(v))
        return not hit if self.op in ("ne", "nin") else hit


def _filter_error(text):
    return ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: filters, {text}.")


def _split_filter_value(text, i, op):
    """Read one value starting at text[i]; returns (value, index after the separating comma)."""
    n = len(text)
    if i < n and text[i] == '"':
        end = text.find('"', i + 1)
        if end < 0:
            raise _filter_error(text)
        if end + 1 < n and text[end + 1] != ",":
            raise _filter_error(text)
        return text[i + 1:end], end + 2
    end = text.find(",", i)
    end = n if end < 0 else end
    value = text[i:end]
    # tolerate an unquoted CSV for in/nin: following segments without ':' still belong to the value
    while op in ("in", "nin") and end < n:
        nxt = text.find(",", end + 1)
        nxt = n if nxt < 0 else nxt
        if ":" in text[end + 1:nxt]:
            break
        value, end = text[i:nxt], nxt
    return value, end + 1


def parse_filters(text):
    """`field:op:value[,field:op:value]` with optional double-quoted values (which may hold , and :)."""
    filters, i = [], 0
    while text and i < len(text):
        c1 = text.find(":", i)
        c2 = text.find(":", c1 + 1) if c1 >= 0 else -1
        if c2 < 0:
            raise _filter_error(text)
        field, op = text[i:c1].strip(), text[c1 + 1:c2].strip()
        if not field:
            raise ApiError(400, "BDC_1130", f"Invalid list filter field: {field}.")
        if op not in FILTER_OPS:
            raise ApiError(400, "BDC_1131", f"Invalid list filter operator: {op}.")
        value, i = _split_filter_value(text, c2 + 1, op)
        filters.append(_Filter(field, op, value))
    return filters


def parse_sort(text):
    specs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        field, _, direction = part.partition(":")
        direction = (direction or "asc").lower()
        if not field or direction not in ("asc", "desc"):
            raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: sort, {part}.")
        specs.append((field.split("."), direction == "desc"))
    return specs


def _sort_key(path):
    def key(item):
        values = _resolve(item, path)
        if not values:
            return (0, "")
        v = values[0]
        return (1, float(v)) if isinstance(v, (int, Decimal)) and not isinstance(v, bool) else (1, str(v))
    return key


_DEFAULT_ORDER = operator.itemgetter("createdTime", "id")


def _encode_page(offset, qhash):
    return base64.urlsafe_b64encode(f"{offset}:{qhash}".encode()).decode().rstrip("=")


def _decode_page(token, qhash):
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset_text, token_hash = raw.split(":", 1)
        offset = int(offset_text)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: page, {token}.") from None
    if token_hash != qhash or offset < 0:
        # the token belongs to another query (different filters/sort): BILL would not honour it either [U]
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: page, {token}.")
    return offset


def paginate(items, args, *, forward_only=False):
    """Apply `filters`, `sort`, `max`, `page` and build BILL's `{nextPage, prevPage, results}` answer."""
    max_text = args.get("max", "20")
    try:
        page_size = int(max_text)
    except ValueError:
        page_size = 0
    if not 1 <= page_size <= 100:
        raise ApiError(400, "BDC_1129", f"Invalid parameter value for parameter,value: max, {max_text}.")
    filters_text, sort_text = args.get("filters", ""), args.get("sort", "")
    filters = parse_filters(filters_text)
    specs = parse_sort(sort_text)
    qhash = hashlib.sha1(f"{filters_text}|{sort_text}".encode()).hexdigest()[:10]
    offset = _decode_page(args["page"], qhash) if args.get("page") else 0
    rows = [it for it in items if all(f(it) for f in filters)] if filters else list(items)
    rows.sort(key=_DEFAULT_ORDER)  # stable default order; every listed entity has createdTime and id
    for path, desc in reversed(specs):
        rows.sort(key=_sort_key(path), reverse=desc)
    page = rows[offset:offset + page_size]
    answer = {}
    # A full page always carries nextPage, so an exact multiple ends with an empty page (as TP-MJ saw live).
    if len(page) == page_size:
        answer["nextPage"] = _encode_page(offset + page_size, qhash)
    if offset > 0 and not forward_only:
        answer["prevPage"] = _encode_page(max(0, offset - page_size), qhash)
    answer["results"] = page
    return answer
