"""SAP simulator: parsing input values and rendering rows per OData version."""

from __future__ import annotations

from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal, InvalidOperation

from .schema import DATE, ENTITY_SETS, NUM, TIME, _Type

# ---------------------------------------------------------------------------------------------------------------
# Value parsing and rendering
# ---------------------------------------------------------------------------------------------------------------

def _parse_date_text(text: str) -> date | None:
    """'YYYY-MM-DD' (any time part ignored, as SAP does for date properties) or 'YYYYMMDD'."""
    text = text.strip()
    try:
        if len(text) >= 10 and text[4] == "-":
            return date.fromisoformat(text[:10])
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
    return None


def _parse_time_text(text: str) -> dt_time | None:
    """'HH:MM:SS', 'HH:MM', 'HHMMSS' or 'HHMM' (the forms the SAP guide shows for time properties)."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(float(p)) for p in text.split(":")]
            if len(parts) in (2, 3):
                return dt_time(*parts)
        elif text.isdigit() and len(text) in (4, 6):
            return dt_time(int(text[:2]), int(text[2:4]), int(text[4:] or 0))
    except ValueError:
        return None
    return None


def _as_date(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return _parse_date_text(value)
    return None


def _as_decimal(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _date_v1(value: date) -> str:
    return value.isoformat()


def _date_v2(value: date) -> str:
    # Edm.DateTimeOffset; exact SAP rendering UNCONFIRMED, midnight UTC is what public v2 clients expect.
    return value.isoformat() + "T00:00:00Z"


def _time_out(value: dt_time) -> str:
    return value.strftime("%H:%M:%S")


def _out_converter(kind, version: int):
    if kind == NUM:
        return float
    if kind == DATE:
        return _date_v1 if version == 1 else _date_v2
    if kind == TIME:
        return _time_out
    return None


def _make_renderer(etype: _Type, version: int):
    scalars = [(name, _out_converter(kind, version)) for name, kind in etype.fields.items()]
    collections = [(name, _make_renderer(sub, version)) for name, sub in etype.collections.items()]
    return scalars, collections


def _render(row: dict, renderer, select: frozenset | None = None) -> dict:
    scalars, collections = renderer
    out = {}
    for name, conv in scalars:
        if select is None or name in select:
            value = row.get(name)
            out[name] = conv(value) if conv is not None and value is not None else value
    for name, sub in collections:
        if select is None or name in select:
            out[name] = [_render(line, sub) for line in row.get(name) or ()]
    return out


RENDERERS = {(name, version): _make_renderer(es.etype, version)
             for name, es in ENTITY_SETS.items() for version in (1, 2)}


def _copy_row(row: dict) -> dict:
    """Copy deep enough that callers can't change stored state (rows hold only scalars and lists of dicts)."""
    return {k: [dict(line) for line in v] if isinstance(v, list) else v for k, v in row.items()}
