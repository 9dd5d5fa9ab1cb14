"""crmlib.ingest.stage end to end on the fixture: tables, keys, stitching, privacy, report helpers."""

from __future__ import annotations

import ibis
import pandas as pd
import pyarrow.parquet as pq
import pytest

from crmlib.context import RunContext
from crmlib.engine import Engine
from crmlib.ingest import stage
from tests.ingest.support.fixture import NOW, stand_in_resolver, write_fixture
from crmlib.ingest.errors import IngestError
from crmlib.ingest.stage import DEFAULT_SALT, ingest, run_ingest
from crmlib.ingest.readers import read_source, store_numbered
from crmlib.ingest.validate import validate_source
from crmlib.params import complete_source, validate_params
from crmlib.ingest import _sql_duckdb as _sql

CONTRACT = {
    "orders": ["customer_key", "source", "source_customer_id", "order_id", "order_ts", "amount", "currency",
               "channel", "store_id", "status", "items"],
    "touchpoints": ["customer_key", "anonymous_id", "touch_ts", "channel", "campaign_id", "touch_type", "cost",
                    "source"],
    "events": ["customer_key", "anonymous_id", "event_ts", "event_type", "page", "utm_source", "utm_medium",
               "utm_campaign", "device", "source"],
    "spend": ["date", "channel", "campaign_id", "cost", "impressions", "clicks", "source"],
    "experiments": ["experiment_id", "customer_key", "variant", "assigned_ts", "is_control", "source"],
    "surveys": ["customer_key", "response_ts", "nps_score", "csat", "category", "source"],
    "customers": ["customer_key", "first_order_ts", "last_order_ts", "orders", "revenue", "sources", "tags",
                  "consent_marketing", "loyalty_tier", "gender", "city", "province", "signup_ts"],
    "identity_map": ["source", "source_customer_id", "customer_key", "match_rule"],
    "quarantine": ["source", "row_number", "reason", "raw"],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    params = write_fixture(root / "data")
    eng = Engine(root / "run")
    summary = ingest(eng, params, now=NOW, resolve=stand_in_resolver())
    yield RunContext(params=params, run_dir=root / "run", engine=eng), summary
    eng.close()


def _table(ctx, name):
    return pd.read_parquet(ctx.engine.table_path(name))


def test_contract_tables_and_columns(run):
    ctx, summary = run
    for name, cols in CONTRACT.items():
        assert ctx.engine.has_table(name), name
        assert cols == [c for c in pq.read_schema(ctx.engine.table_path(name)).names if c in cols], name
    assert (ctx.engine.tables_dir / "data_quality.json").exists()
    schema = pq.read_schema(ctx.engine.table_path("orders"))
    assert str(schema.field("order_ts").type) == "timestamp[us]"  # naive (no time zone)
    assert str(schema.field("amount").type) == "double"
    assert str(pq.read_schema(ctx.engine.table_path("customers")).field("orders").type) == "int64"
    assert summary.n_customers == len(_table(ctx, "customers"))


def test_every_loaded_row_has_a_customer_key(run):
    ctx, summary = run
    orders = _table(ctx, "orders")
    assert orders.customer_key.notna().all()
    assert len(orders) == sum(summary.quality["sources"][s]["rows_loaded"] for s in ("orders", "store_orders"))
    idmap = _table(ctx, "identity_map")
    # store orders carry loyalty-card numbers: their key is the card's key in the identity map
    k1 = idmap[(idmap.source == "cards") & (idmap.source_customer_id == "K1")].customer_key.item()
    assert set(orders[orders.source == "store_orders"].set_index("source_customer_id").customer_key[["K1"]]) == {k1}
    # C1 (crm) and K1 (cards) are one person through linked_ids and the shared phone
    c1 = idmap[(idmap.source == "crm") & (idmap.source_customer_id == "C1")].customer_key.item()
    assert c1 == k1


def test_row_numbers_survive_a_malformed_line(run):
    ctx, _ = run
    orders = _table(ctx, "orders")
    assert orders.set_index("order_id").loc["O9", "row_number"] == 12  # the malformed line 11 came before it
    q = _table(ctx, "quarantine")
    assert q[(q.source == "orders")].set_index("row_number").loc[11, "reason"] == "malformed_row:too_many_fields"


def test_cookie_stitching(run):
    ctx, _ = run
    events = _table(ctx, "events")
    idmap = _table(ctx, "identity_map")
    c2 = idmap[(idmap.source == "crm") & (idmap.source_customer_id == "C2")].customer_key.item()
    a1 = events[events.anonymous_id == "A1"]
    assert len(a1) == 2 and set(a1.customer_key) == {c2}      # the anonymous page view got C2's key
    assert events[events.anonymous_id == "A2"].customer_key.isna().all()  # never logged in
    touches = _table(ctx, "touchpoints")
    assert touches.set_index("anonymous_id").loc["A1", "customer_key"] == c2


def test_customers_values(run):
    ctx, _ = run
    c = _table(ctx, "customers")
    idmap = _table(ctx, "identity_map")
    key = idmap[(idmap.source == "crm") & (idmap.source_customer_id == "C1")].customer_key.item()
    row = c.set_index("customer_key").loc[key]
    # C1: O1 1234.50 + O2 99.50 (the duplicate O2 dropped) + store K1 300
    assert row.revenue == pytest.approx(1634.0) and row.orders == 3
    assert list(row.tags) == ["high_value"]
    assert set(row.sources) == {"crm", "cards", "orders", "store_orders", "touches", "ab", "nps"}
    assert row.consent_marketing == True  # noqa: E712
    assert not {"name", "email", "phone"} & set(c.columns)


def test_no_pii_in_customers_or_quarantine(run):
    ctx, _ = run
    pii = ["Wang Wei", "wang.wei@example.com", "Wang.Wei", "13800138000", "nobody@example.com", "王伟", "Nobody"]
    for name in ("customers", "quarantine", "identity_map"):
        text = _table(ctx, name).astype(str).to_csv()
        assert not [p for p in pii if p in text], name


def test_keep_pii_and_salt(tmp_path, monkeypatch):
    params = write_fixture(tmp_path / "data", privacy={"keep_pii": True, "salt": "pepper"})
    calls: list = []
    monkeypatch.delenv("CRM_PII_SALT", raising=False)
    with Engine(tmp_path / "run1") as eng:
        s1 = ingest(eng, params, now=NOW, resolve=stand_in_resolver(calls))
        c = pd.read_parquet(eng.table_path("customers"))
        q = pd.read_parquet(eng.table_path("quarantine"))
    assert {"name", "email", "phone"} <= set(c.columns)
    assert "+8613800138000" in set(c.phone)
    assert "nobody@example.com" in q[q.source == "crm"].raw.item()
    assert calls[-1]["salt"] == "pepper" and s1.salt_source == "params:privacy.salt" and not s1.warnings
    assert calls[-1]["method"] == "deterministic" and calls[-1]["match_threshold"] == 0.5
    monkeypatch.setenv("CRM_PII_SALT", "from-env")
    with Engine(tmp_path / "run2") as eng:
        s2 = ingest(eng, params, now=NOW, resolve=stand_in_resolver(calls))
        c2 = pd.read_parquet(eng.table_path("customers"))
    assert calls[-1]["salt"] == "from-env" and s2.salt_source == "env:CRM_PII_SALT"
    assert not set(c.customer_key) & set(c2.customer_key)


def test_default_salt_warns(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_PII_SALT", raising=False)
    params = write_fixture(tmp_path / "data")
    calls: list = []
    with Engine(tmp_path / "run") as eng:
        s = ingest(eng, params, now=NOW, resolve=stand_in_resolver(calls))
    assert calls[-1]["salt"] == DEFAULT_SALT and s.salt_source == "default"
    assert any("salt" in w for w in s.warnings)


def test_identity_records_built_from_every_kind(tmp_path):
    params = write_fixture(tmp_path / "data")
    calls: list = []
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver(calls))
    rec = calls[-1]["records"].set_index(["source", "source_customer_id"]).sort_index()
    assert rec.index.is_unique
    assert set(rec.index) == {("crm", "C1"), ("crm", "C2"), ("crm", "C3"), ("crm", "C4"),
                              ("crm", "C5"),   # only in orders (id_source crm): still a customer
                              ("crm", "K2"),   # a survey answer filed under crm ids
                              ("cards", "K1"), ("cards", "K2"), ("cards", "K3")}
    assert rec.loc[("crm", "C1"), "email"] == "wang.wei@example.com"
    assert rec.loc[("crm", "C1"), "phone"] == "+8613800138000"
    assert rec.loc[("cards", "K1"), "phone"] == "+8613800138000"
    assert rec.loc[("cards", "K2"), "phone"] == "+8613700137000"
    assert rec.loc[("crm", "C4"), "phone"] == "+16502530000"
    assert pd.isna(rec.loc[("crm", "C3"), "email"]) and pd.isna(rec.loc[("crm", "C3"), "phone"])
    assert rec.loc[("crm", "C1"), "linked_ids"] == "cards:K1"
    assert list(rec.columns[:7]) == ["name", "email", "phone", "gender", "birth_date", "city", "linked_ids"]


def test_sources_sharing_a_namespace_share_bare_records(tmp_path):
    # X9 is in neither contacts file but in both orders files filed under crm ids: one record, one person
    d = tmp_path / "data"
    d.mkdir()
    (d / "crm.csv").write_text("customer_id,email\nC1,a@x.com\n", encoding="utf-8")
    (d / "web.csv").write_text("order_id,customer_id,order_ts,amount\nO1,C1,2026-01-01,10\nO2,X9,2026-01-02,20\n",
                               encoding="utf-8")
    (d / "pos.csv").write_text("order_id,customer_id,order_ts,amount\nP1,X9,2026-01-03,30\n", encoding="utf-8")
    ids = {"customer_id": "source_customer_id"}
    params = validate_params({
        "run": {"name": "ns", "timezone": "Asia/Shanghai", "output_dir": str(tmp_path)},
        "sources": [{"name": "crm", "kind": "contacts", "path": str(d / "crm.csv"), "columns": ids},
                    {"name": "web", "kind": "orders", "path": str(d / "web.csv"), "id_source": "crm", "columns": ids},
                    {"name": "pos", "kind": "orders", "path": str(d / "pos.csv"), "id_source": "crm", "columns": ids}],
        "ingest": {"identity": {"method": "deterministic"}}}, tmp_path)
    with Engine(tmp_path / "run") as eng:
        summary = ingest(eng, params, now=NOW)
        customers = eng.to_pandas(eng.table("customers")).set_index("orders").sort_index()
        assert not eng.con.list_tables(like="^(decided|ids|dups)_")  # scratch dropped
    assert summary.n_customers == 2 and summary.n_records == 2
    assert customers.revenue.tolist() == [10.0, 50.0]
    assert [list(s) for s in customers.sources] == [["crm", "web"], ["pos", "web"]]


def test_row_numbers_of_a_big_file_read_in_parallel(tmp_path):
    # 1M contact lines (~10 MB: several CSV buffers, read by every thread); parsing the gender compares with
    # a word list, which DuckDB would run as a join that shuffles rows - every row must keep its number
    path = tmp_path / "contacts.csv"
    path.write_text("customer_id,gender\n" + "".join(f"C{i},{'M' if i % 3 else '女'}\n" for i in range(1, 1_000_001)),
                    encoding="utf-8")
    with Engine(tmp_path / "run", database=":memory:") as eng:
        raw = read_source(eng, complete_source({"name": "c", "kind": "contacts", "path": str(path),
                                                "columns": {"customer_id": "source_customer_id"}}))
        vs = validate_source(raw, timezone="Asia/Shanghai", currency="CNY", now_local=NOW.replace(tzinfo=None))
        t = store_numbered(eng, raw, vs.base)
        wrong = t.filter(t.source_customer_id != "C" + t._row_number.cast("string"))
        assert t.count().execute() == 1_000_000 and wrong.count().execute() == 0
        assert eng.con.raw_sql("SELECT current_setting('disabled_optimizers')").fetchone()[0] == ""
        with pytest.raises(RuntimeError, match="HASH_GROUP_BY"):
            _sql.create_numbered_table(eng, "grouped", "SELECT gender, count(*) AS n FROM raw_c GROUP BY 1")


def test_engine_scratch_replaces_a_relation(tmp_path):
    with Engine(tmp_path / "run", database=":memory:") as eng:
        eng.con.raw_sql("CREATE VIEW s AS SELECT 1 AS x")
        assert eng.scratch("s", ibis.memtable({"y": [1, 2]})).count().execute() == 2
        assert eng.scratch("s", ibis.memtable({"z": ["a"]})).columns == ("z",)


def test_report_helpers(run):
    ctx, _ = run
    rows = stage.rows_by_source(ctx.engine, ctx.params)
    assert (rows.rows_read == rows.rows_loaded + rows.rows_quarantined + rows.duplicates_dropped).all()
    assert rows.loc["orders", "check:duplicate_order_id"] == 1
    reasons = stage.quarantine_reasons(ctx.engine, ctx.params)
    assert reasons.rows.sum() == rows.rows_quarantined.sum()
    assert set(reasons.columns) == {"source", "reason", "rows", "first_row"}
    links = stage.identity_links(ctx.engine, ctx.params)
    assert {"rule", "links", "records"} <= set(links.columns)
    overview = stage.customer_overview(ctx.engine, ctx.params).set_index("metric")["value"]
    assert overview["customers"] == len(_table(ctx, "customers"))
    assert overview["tag:high_value"] == 2   # C1 (1634) and C5 (5000)
    monthly = stage.monthly_orders_by_channel(ctx.engine, ctx.params)
    jan = monthly[(pd.to_datetime(monthly.month) == "2026-01-01") & (monthly.channel == "online")]
    assert jan.orders.item() == 1 and jan.revenue.item() == pytest.approx(1234.5)
    feb = monthly[pd.to_datetime(monthly.month) == "2026-02-01"].set_index("channel")
    assert feb.loc["online", "orders"] == 1 and feb.loc["online", "revenue"] == pytest.approx(79.5)  # 99.5 - 20
    assert monthly.orders.sum() == (_table(ctx, "orders").amount > 0).sum()


def test_with_the_real_identity_module(tmp_path):
    """Integration with crmlib.ingest.identity (deterministic method): same people as the stand-in."""
    params = write_fixture(tmp_path / "data")
    with Engine(tmp_path / "run") as eng:
        summary = ingest(eng, params, now=NOW)
        idmap = pd.read_parquet(eng.table_path("identity_map"))
    key = idmap.set_index(["source", "source_customer_id"]).customer_key
    assert key[("crm", "C1")] == key[("cards", "K1")]          # linked id + shared phone
    assert key[("crm", "C2")] != key[("crm", "C1")]
    assert len(idmap) == 9 and summary.n_customers == idmap.customer_key.nunique()
    assert idmap.customer_key.notna().all()


def test_run_ingest_takes_a_context(tmp_path):
    params = write_fixture(tmp_path / "data")
    with Engine(tmp_path / "run") as eng:
        ctx = RunContext(params=params, run_dir=tmp_path / "run", engine=eng)
        summary = stage.ingest(ctx.engine, ctx.params, now=NOW, resolve=stand_in_resolver())
        assert run_ingest.__doc__ and "RunContext" in run_ingest.__doc__
    assert "customers=" in repr(summary) and summary.rows.loc["orders", "rows_read"] == 12


def test_bad_source_stops_with_ingest_error(tmp_path):
    params = write_fixture(tmp_path / "data")
    params["sources"][2]["columns"] = {"customer_id": "source_customer_id"}
    (tmp_path / "data" / "orders.csv").write_text("order_id,customer_id,when,amount\nO1,C1,2026-01-01,1\n")
    with Engine(tmp_path / "run") as eng, pytest.raises(IngestError) as err:
        ingest(eng, params, now=NOW)
    assert "'order_ts'" in str(err.value) and "orders.csv" in str(err.value) and "when" in str(err.value)


def test_a_file_of_malformed_lines_points_at_the_delimiter(tmp_path):
    params = write_fixture(tmp_path / "data")
    # a ';'-separated body under a ','-separated header: every line has the wrong number of fields
    lines = ["order_id,customer_id,order_ts,amount,currency,channel,store"] + [
        f"O{i};C1;2026-01-01;1;CNY;online;S{i}" for i in range(300)]
    (tmp_path / "data" / "orders.csv").write_text("\n".join(lines) + "\n")
    with Engine(tmp_path / "run") as eng, pytest.raises(IngestError) as err:
        ingest(eng, params, now=NOW)
    msg = str(err.value)
    assert "300 of 300 lines" in msg and "delimiter" in msg and "row 1" in msg


def test_survey_comments_never_reach_the_tables(run):
    from crmlib.text import comment_terms
    from tests.ingest.support.fixture import SURVEY_COMMENT

    ctx, _ = run
    surveys = _table(ctx, "surveys")
    assert "comment" not in surveys.columns
    terms = surveys.set_index("source_customer_id").comment_terms
    assert list(terms["C1"]) == comment_terms(SURVEY_COMMENT) and "service" in list(terms["C1"])
    for path in ctx.engine.tables_dir.iterdir():
        text = (pd.read_parquet(path).astype(str).to_csv() if path.suffix == ".parquet"
                else path.read_text(encoding="utf-8"))
        assert not [w for w in ("Mary", "mary", "13800138000", "thanks to") if w in text], path.name


def test_unmapped_columns_naming_personal_data_are_not_stored_in_fact_tables(tmp_path):
    params = write_fixture(tmp_path / "data")
    shop = tmp_path / "data" / "store_orders.csv"
    rows = shop.read_text(encoding="utf-8").splitlines()
    extra = ["收货人,备注,gift_wrap", "李雷,call 13800138000,yes", "韩梅梅,,no", "韩梅梅,,no"]
    shop.write_text("\n".join(f"{r},{e}" for r, e in zip(rows, extra)) + "\n", encoding="utf-8")
    with Engine(tmp_path / "run") as eng:
        ingest(eng, params, now=NOW, resolve=stand_in_resolver())
        orders = pd.read_parquet(eng.table_path("orders"))
    store = orders[orders.source == "store_orders"]
    kept = [dict(m) for m in store.extras]
    assert kept and all(set(m) == {"gift_wrap"} for m in kept)  # the harmless column is still there
    text = orders.astype(str).to_csv()
    assert "李雷" not in text and "13800138000" not in text and "韩梅梅" not in text
