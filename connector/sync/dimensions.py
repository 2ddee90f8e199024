"""Which SAP line field feeds which BILL classification (a connection's `coding` setting).

SAP document lines carry up to five cost-center dimensions (`CostingCode`, `CostingCode2`…`5`), a project
(`ProjectCode`, or the header `Project`) and, in a company with branches, the document's branch
(`BPL_IDAssignedToInvoice`). BILL line items take one `departmentId`, `locationId`, `accountingClassId` and `jobId`
each (api-facts-addendum §4). A connection says which source feeds which:

    "coding": {"department": "dimension1", "location": "dimension2", "class": "project", "job": "branch"}

Sources: `dimension1`…`dimension5`, `project`, `branch`; for the department also `first` (the line's first
non-empty cost-center code, whatever its dimension: the behaviour before this setting existed, and the default)
and `none`. Leaving a classification out (or `none`) sends nothing for it. Each source feeds one classification.
"""

DIMENSION_SOURCES = ("dimension1", "dimension2", "dimension3", "dimension4", "dimension5")
SOURCES = DIMENSION_SOURCES + ("project", "branch")
CLASSIFICATIONS = ("department", "location", "class", "job")
DEFAULT_CODING = {"department": "first"}
COSTING_FIELD_OF = {f"dimension{n}": ("CostingCode" if n == 1 else f"CostingCode{n}") for n in range(1, 6)}


class CodingError(ValueError):
    pass


def parse_coding(value, where="coding"):
    """The normalised `coding` setting, or CodingError naming what is wrong."""
    if value in (None, {}):
        return dict(DEFAULT_CODING)
    if not isinstance(value, dict):
        raise CodingError(f'{where} must be an object like {{"department": "dimension1", "location": "dimension2"}}')
    unknown = sorted(set(value) - set(CLASSIFICATIONS))
    if unknown:
        raise CodingError(f"unknown key {where}.{unknown[0]} (allowed: {', '.join(CLASSIFICATIONS)})")
    coding, used = {}, {}
    for kind in CLASSIFICATIONS:
        source = value.get(kind, "first" if kind == "department" else "none")
        allowed = SOURCES + (("first", "none") if kind == "department" else ("none",))
        if not isinstance(source, str) or source not in allowed:
            raise CodingError(f"{where}.{kind} must be one of {', '.join(allowed)}, not {source!r}")
        if source == "none":
            if kind == "department":
                coding[kind] = "none"
            continue
        if source in used:
            raise CodingError(f"{where}: {source} feeds both {used[source]} and {kind}; one source feeds one "
                              "classification")
        if source != "first":
            used[source] = kind
        coding[kind] = source
    return coding


def coding_of(connection):
    try:
        return parse_coding(getattr(connection, "coding", None) or {})
    except CodingError:
        return dict(DEFAULT_CODING)


def line_value(source, line, doc):
    """The SAP code a source gives for one document line ('' when the line has none)."""
    if source in COSTING_FIELD_OF:
        return str(line.get(COSTING_FIELD_OF[source]) or "").strip()
    if source == "project":
        return str(line.get("ProjectCode") or doc.get("Project") or "").strip()
    if source == "branch":
        value = doc.get("BPL_IDAssignedToInvoice")
        return "" if value in (None, "") else str(value)
    return ""


def describe(coding):
    return ", ".join(f"{kind} ← {source}" for kind, source in coding.items())
