"""SAP simulator: collection queries and paging."""

from __future__ import annotations

import operator
from urllib.parse import quote

from werkzeug.wrappers import Response

from .filters import _FilterCompiler, _parse_orderby, _parse_select
from .protocol import COUNT, META, NEXT_LINK, _Ctx, _json_response
from .schema import SapError, _EntitySet
from .values import RENDERERS, _render


class QueryMixin:
    """GET on collections: $filter/$orderby/$select, server-driven paging and nextLinks."""

    # ------------------------------------------------------------------------------------------- querying
    def _select(self, ctx: _Ctx, es: _EntitySet):
        text = ctx.option("$select")
        return None if text is None else _parse_select(text, es.etype)

    def _compiled_filter(self, es: _EntitySet, text: str, ci: bool):
        cache_key = (es.name, text, ci)
        predicate = self._filter_cache.get(cache_key)
        if predicate is None:
            predicate = _FilterCompiler(text, es.etype, ci).compile()
            if len(self._filter_cache) > 512:
                self._filter_cache.clear()
            self._filter_cache[cache_key] = predicate
        return predicate

    def _query_rows(self, ctx: _Ctx, es: _EntitySet) -> list[dict]:
        """Filtered and ordered rows, cached until the entity set changes (paging re-asks the same query)."""
        if ctx.option("$expand") is not None:
            raise SapError(400, 201, "Cannot expand invalid navigation property")
        filter_text = ctx.option("$filter")
        orderby_text = ctx.option("$orderby")
        ci = ctx.header("B1S-CaseInsensitive").lower() == "true"
        cache_key = (es.name, filter_text, orderby_text, ci)
        cached = self._query_cache.get(cache_key)
        if cached is not None and cached[0] == self._versions[es.name]:
            return cached[1]
        table = self._tables[es.name]
        if filter_text is not None:
            predicate = self._compiled_filter(es, filter_text, ci)
            rows = [row for row in table.values() if predicate(row)]
        else:
            rows = list(table.values())
        self._sort(rows, es, orderby_text)
        if len(self._query_cache) > 256:
            self._query_cache.clear()
        self._query_cache[cache_key] = (self._versions[es.name], rows)
        return rows

    @staticmethod
    def _sort(rows: list[dict], es: _EntitySet, orderby_text: str | None):
        keys = _parse_orderby(orderby_text, es.etype) if orderby_text is not None else [(es.key, False)]
        if len({descending for _, descending in keys}) == 1:
            # Fast path: one C-level sort, fine while no value is NULL (None raises TypeError, then fall back).
            try:
                rows[:] = sorted(rows, key=operator.itemgetter(*[p for p, _ in keys]), reverse=keys[0][1])
                return
            except (TypeError, KeyError):
                pass
        # Stable multi-pass sort from the last key to the first; NULLs sort first ascending (SQL Server).
        for prop, descending in reversed(keys):
            rows.sort(key=lambda row, p=prop: (False, 0) if row.get(p) is None else (True, row[p]),
                      reverse=descending)

    def _page_size(self, ctx: _Ctx) -> tuple[int, str | None]:
        for token in ctx.prefer_tokens():
            name, _, value = token.partition("=")
            if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
                size = int(value.strip())
                return size, f"odata.maxpagesize={size}"
        header = ctx.header("B1S-PageSize").strip()
        if header.isdigit():
            return int(header), None
        return self.default_page_size, None

    @staticmethod
    def _int_option(ctx: _Ctx, name: str) -> int | None:
        text = ctx.option(name)
        if text is None:
            return None
        if not text.strip().isdigit():
            raise SapError(400, 201, f"Query string error - Invalid value for {name}")
        return int(text)

    def _get_collection(self, ctx: _Ctx, es: _EntitySet) -> Response:
        select = self._select(ctx, es)
        rows = self._query_rows(ctx, es)
        skip = self._int_option(ctx, "$skip") or 0
        top = self._int_option(ctx, "$top")
        window = rows[skip:] if top is None else rows[skip:skip + top]
        page_size, applied = self._page_size(ctx)
        page = window[:page_size] if page_size else window
        version = ctx.version
        body = {META[version]: ctx.metadata(es.name + (f"({','.join(sorted(select))})" if select and version == 2
                                                       else ""))}
        if self._wants_count(ctx):
            body[COUNT[version]] = len(rows)
        renderer = RENDERERS[es.name, version]
        body["value"] = [_render(row, renderer, select) for row in page]
        next_link = self._next_link(ctx, es, page_size, len(page), skip, top)
        if next_link and self.next_link_style == "absolute":
            next_link = f"{ctx.root}/{next_link}"  # the guide's style; live SL answers relative links
        if next_link:
            body[NEXT_LINK[version]] = next_link
        headers = [("Preference-Applied", applied)] if applied else []
        return _json_response(version, 200, body, headers)

    @staticmethod
    def _wants_count(ctx: _Ctx) -> bool:
        if ctx.version == 1:
            return (ctx.option("$inlinecount") or "").lower() == "allpages"
        return (ctx.option("$count") or "").lower() == "true"

    @staticmethod
    def _next_link(ctx: _Ctx, es: _EntitySet, page_size: int, returned: int, skip: int, top: int | None):
        # SAP only checks whether the page is full, so a full last page still gets a nextLink.
        if not page_size or returned < page_size:
            return None
        remaining_top = None if top is None else top - returned
        if remaining_top is not None and remaining_top <= 0:
            return None
        options = [(k, v) for k, v in ctx.options if k not in ("$skip", "$top")]
        if remaining_top is not None:
            options.append(("$top", str(remaining_top)))
        options.append(("$skip", str(skip + returned)))
        query = "&".join(f"{k}={quote(v, safe=chr(39) + '(),:$*/@!;=')}" for k, v in options)
        # Relative to the service root, as observed live on v1 and v2.
        return f"{es.name}?{query}"
