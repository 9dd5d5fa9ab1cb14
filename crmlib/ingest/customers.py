"""The ``customers`` table: one row per ``customer_key``, and tag rules from params.

Columns and conventions
-----------------------
* ``orders``: number of orders with a positive amount (a refund is not a purchase);
  ``revenue``: net, the sum of all amounts (refunds, negative, subtract);
  ``first_order_ts`` / ``last_order_ts``: first and last positive order (naive local time).
* ``sources``: sorted names of the sources the person appears in (contacts and every other kind).
* Attributes from contacts records (``gender``, ``city``, ``province``, ``loyalty_tier``): the first
  non-null value in params source order, then file row order. ``signup_ts``: the earliest.
  ``consent_marketing``: false if any system says false (an opt-out anywhere wins), true if any says
  true, else null.
* ``name``, ``email``, ``phone`` only when ``privacy.keep_pii`` is true.
* ``tags``: the names of the tag rules (``ingest.tags``) the row satisfies, in params order.

Tag rules are parsed, never evaluated: a rule is a comparison ``column OP literal`` (OP one of
``== != < <= > >=``, or ``in [..]`` / ``not in [..]``), combined with ``and``, ``or``, ``not`` and
parentheses, over the customers columns - e.g. ``revenue >= 5000``,
``orders >= 3 and last_order_ts >= '2026-01-01'``, ``loyalty_tier in ['gold', 'platinum']``.
"""

from __future__ import annotations

import ast
from typing import Any, Sequence

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops

from crmlib.params import schema_default

__all__ = ["build_customers", "order_totals", "parse_tag_rule", "TagRuleError", "tag_array"]

_OPS = {ast.Eq: "__eq__", ast.NotEq: "__ne__", ast.Lt: "__lt__", ast.LtE: "__le__", ast.Gt: "__gt__",
        ast.GtE: "__ge__"}


class TagRuleError(ValueError):
    """A tag rule that is not a comparison of customers columns with literals."""


def parse_tag_rule(rule: str, table: ibis.Table, *, tag: str = "") -> ibis.BooleanValue:
    """Parse ``rule`` into a boolean Ibis expression over ``table``'s columns (no ``eval``).

    Raises
    ------
    TagRuleError
        Naming the tag, the offending part and the columns that can be used.
    """
    where = f"tag {tag!r}: " if tag else ""
    try:
        tree = ast.parse(rule.replace("&&", " and ").replace("||", " or "), mode="eval")
    except SyntaxError as exc:
        raise TagRuleError(f"{where}cannot parse rule {rule!r} ({exc.msg})") from None

    def literal(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)) or (
                isinstance(node, ast.Constant) and node.value is None):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.Name) and node.id in ("true", "false", "null", "True", "False", "None"):
            return {"true": True, "false": False, "null": None}.get(node.id.lower(), None) if node.id.lower() != "none" else None
        raise TagRuleError(f"{where}expected a literal value, got {ast.unparse(node)!r} in rule {rule!r}")

    def column(node: ast.AST) -> ibis.Value:
        if isinstance(node, ast.Name) and node.id in table.columns:
            return table[node.id]
        raise TagRuleError(f"{where}{ast.unparse(node)!r} is not a customers column in rule {rule!r} "
                           f"(columns: {', '.join(table.columns)})")

    def coerce(col: ibis.Value, value: Any) -> Any:
        if isinstance(value, str) and (col.type().is_timestamp() or col.type().is_date()):
            return ibis.literal(value).cast(col.type())
        return value

    def build(node: ast.AST) -> ibis.BooleanValue:
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            return ibis.and_(*parts) if isinstance(node.op, ast.And) else ibis.or_(*parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~build(node.operand)
        if isinstance(node, ast.Compare):
            left, out = node.left, []
            for op, right in zip(node.ops, node.comparators):
                if isinstance(left, ast.Name) and left.id.lower() not in ("true", "false", "null", "none"):
                    col, lit_node, flip = column(left), right, False
                else:
                    col, lit_node, flip = column(right), left, True
                if isinstance(op, (ast.In, ast.NotIn)):
                    if flip or not isinstance(lit_node, (ast.List, ast.Tuple, ast.Set)):
                        raise TagRuleError(f"{where}use `column in [a, b]` in rule {rule!r}")
                    values = [coerce(col, literal(v)) for v in lit_node.elts]
                    expr = col.isin(values) if isinstance(op, ast.In) else col.notin(values)
                elif type(op) in _OPS:
                    value = coerce(col, literal(lit_node))
                    if value is None:
                        expr = col.isnull() if isinstance(op, ast.Eq) else col.notnull()
                    else:
                        name = _OPS[type(op)]
                        if flip:
                            name = {"__lt__": "__gt__", "__gt__": "__lt__", "__le__": "__ge__",
                                    "__ge__": "__le__"}.get(name, name)
                        expr = getattr(col, name)(value)
                else:
                    raise TagRuleError(f"{where}operator {type(op).__name__} not allowed in rule {rule!r}")
                out.append(expr)
                left = right
            return ibis.and_(*out)
        if isinstance(node, ast.Name) and node.id in table.columns and table[node.id].type().is_boolean():
            return table[node.id]
        raise TagRuleError(f"{where}{ast.unparse(node)!r} is not a comparison in rule {rule!r} "
                           "(write e.g. `revenue >= 5000 and orders > 2`)")

    try:
        return build(tree.body)
    except TagRuleError:
        raise
    except Exception as exc:  # a type clash Ibis refuses, e.g. revenue >= 'abc'
        raise TagRuleError(f"{where}rule {rule!r} cannot be applied: {exc}") from None


def tag_array(table: ibis.Table, rules: dict[str, str]) -> ibis.ArrayValue:
    """``list<str>`` of the tag names whose rule holds for the row (empty list when none)."""
    if not rules:
        return ibis.literal([], type="array<string>")
    parts = [ibis.ifelse(parse_tag_rule(rule, table, tag=tag).fill_null(False), ibis.literal(tag),
                         ibis.null("string")) for tag, rule in rules.items()]
    return ibis.array(parts).filter(lambda x: x.notnull())


def order_totals(orders: ibis.Table, by: str = "customer_key") -> ibis.Table:
    """Order totals per ``by``: first and last positive order, positive orders and net revenue.

    They combine by min, max, sum and sum, so totals per source customer id, keyed and passed to
    :func:`build_customers` with ``orders_are_totals=True``, give the same customers as the orders
    themselves - and the stage groups its orders once, while it still has them in the engine, instead
    of reading the written orders table back.
    """
    positive = orders.amount > 0
    return orders.group_by(by).agg(
        first_order_ts=orders.order_ts.min(where=positive),
        last_order_ts=orders.order_ts.max(where=positive),
        orders=orders.count(where=positive),
        revenue=orders.amount.sum(),
    )


def _int64(value: ibis.Value) -> ibis.Value:
    """``value`` cast to int64 in the engine. DuckDB sums BIGINT into a 128-bit integer (written to Parquet
    as a double) while Ibis types the sum int64 and so drops a plain ``cast("int64")``."""
    return ops.Cast(value, to=dt.int64).to_expr()


def build_customers(
    identity_map: ibis.Table,
    orders: ibis.Table,
    contacts: ibis.Table | None,
    appearances: ibis.Table,
    *,
    tags: dict[str, str] | None = None,
    keep_pii: bool = schema_default("privacy.keep_pii"),
    orders_are_totals: bool = False,
    source_names: Sequence[str] | None = None,
) -> ibis.Table:
    """The customers expression (see the module docstring for every column's convention).

    Parameters
    ----------
    identity_map : ibis.Table
        source, source_customer_id, customer_key.
    orders : ibis.Table
        The loaded orders with customer_key, order_ts, amount; or, with ``orders_are_totals``, rows of
        :func:`order_totals` with customer_key (several rows of one key are combined).
    contacts : ibis.Table or None
        Contact records: customer_key, _priority (sort order), gender, city, province, loyalty_tier,
        signup_ts, consent_marketing, name, email, phone.
    appearances : ibis.Table
        customer_key, source: every (person, source) pair seen (repeats are fine).
    tags : dict
        ``ingest.tags``: tag name -> rule.
    keep_pii : bool
        ``privacy.keep_pii``.
    orders_are_totals : bool
        ``orders`` holds order totals, not orders.
    source_names : sequence of str, optional
        Every source name ``appearances`` may hold. Given, each customer's ``sources`` is assembled from
        one flag per name instead of collected into a list per customer (half the work on 1M customers).
    """
    keys = identity_map.select("customer_key").distinct()
    if orders_are_totals:
        per_order = orders.group_by("customer_key").agg(
            first_order_ts=orders.first_order_ts.min(), last_order_ts=orders.last_order_ts.max(),
            orders=_int64(orders.orders.sum()), revenue=orders.revenue.sum())
    else:
        per_order = order_totals(orders)
    if source_names is not None:
        names = sorted(set(source_names))
        flags = appearances.group_by("customer_key").agg(
            **{f"_in_{i}": (appearances.source == name).any() for i, name in enumerate(names)})
        srcs = flags.select("customer_key", sources=ibis.array(
            [ibis.ifelse(flags[f"_in_{i}"], name, ibis.null("string")) for i, name in enumerate(names)]
        ).filter(lambda s: s.notnull()))
    else:
        # a plain collect, then de-duplicated (a person with two ids in one source has the pair twice)
        # and sorted per list, is ~3x faster than an ordered, distinct aggregate on 1M customers
        srcs = appearances.group_by("customer_key").agg(sources=appearances.source.collect().unique().sort())
    out = keys.left_join(per_order, "customer_key").select(keys.customer_key, per_order.first_order_ts,
                                                          per_order.last_order_ts, per_order.orders,
                                                          per_order.revenue)
    out = out.mutate(orders=out.orders.fill_null(0).cast("int64"), revenue=out.revenue.fill_null(0.0))
    out = out.left_join(srcs, "customer_key").select(out, srcs.sources)
    attr_cols = ["consent_marketing", "loyalty_tier", "gender", "city", "province", "signup_ts"]
    pii = ["name", "email", "phone"] if keep_pii else []
    if contacts is not None:
        c = contacts
        aggs = {
            "consent_marketing": ibis.cases(
                ((~c.consent_marketing).any(), False), (c.consent_marketing.any(), True),
                else_=ibis.null("boolean")),
            "signup_ts": c.signup_ts.min(),
        }
        # the first non-null value by priority: an argmin over the non-null values, which every engine runs
        # (an ordered first() is DuckDB's; Ibis compiles this argmin to the same DuckDB SQL as it)
        for col in ["loyalty_tier", "gender", "city", "province", *pii]:
            aggs[col] = c[col].argmin(c._priority, where=c[col].notnull())
        attrs = c.group_by("customer_key").agg(**aggs)
        out = out.left_join(attrs, "customer_key").select(out, *[attrs[k] for k in [*attr_cols, *pii]])
    else:
        nulls = {"consent_marketing": "boolean", "signup_ts": "timestamp"}
        out = out.mutate(**{k: ibis.null(nulls.get(k, "string")) for k in [*attr_cols, *pii]})
    out = out.mutate(sources=out.sources.fill_null(ibis.literal([], type="array<string>")))
    out = out.mutate(tags=tag_array(out, tags or {}))
    cols = ["customer_key", "first_order_ts", "last_order_ts", "orders", "revenue", "sources", "tags",
            *attr_cols, *pii]
    return out.select(cols)
