"""crmlib.ingest.preflight.check_sources: `crm validate` opens the files and reports every problem at once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crmlib.ingest import check_sources, preflight, readers
from crmlib.params import load_params, validate_params

ROOT = Path(__file__).resolve().parents[2]
GOOD = "order_id,customer_id,order_ts,amount\nO1,C1,2026-01-02 10:00,12.5\nO2,C2,2026-01-03,7\n"
IDS = {"customer_id": "source_customer_id"}


def _params(tmp_path: Path, files: dict[str, bytes], **options: dict) -> dict:
    """Params with one orders source per file (``options[name]`` adds keys to that source)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    sources = []
    for name, content in files.items():
        (data / name).write_bytes(content)
        sources.append({"name": Path(name).stem, "kind": "orders", "path": str(data / name), "columns": IDS,
                        **options.get(Path(name).stem, {})})
    return validate_params({"run": {"name": "pf", "timezone": "Asia/Shanghai", "output_dir": str(tmp_path)},
                            "sources": sources}, tmp_path)


def _parquet_bytes(tmp_path: Path) -> bytes:
    p = tmp_path / "x.parquet"
    pd.DataFrame({"order_id": ["O1"], "customer_id": ["C1"], "order_ts": ["2026-01-02"], "amount": [1.0]}).to_parquet(p)
    return p.read_bytes()


def test_the_sample_params_pass():
    params = load_params(ROOT / "params" / "sample.yaml")
    assert check_sources(params) == []


def test_every_problem_at_once_each_with_its_source(tmp_path):
    files = {"good.csv": GOOD.encode(),
             "wrong_map.csv": GOOD.replace("customer_id", "customerid").encode(),
             "gbk.csv": "order_id,customer_id,order_ts,amount\nO1,王伟,2026-01-02,1\n".encode("gbk"),
             "semi.csv": GOOD.replace(",", ";").encode(),
             "parquet.csv": _parquet_bytes(tmp_path)}
    problems = dict(check_sources(_params(tmp_path, files)))
    assert sorted(problems) == ["sources[1] wrong_map (wrong_map.csv)", "sources[2] gbk (gbk.csv)",
                                "sources[3] semi (semi.csv)", "sources[4] parquet (parquet.csv)"]
    wrong_map = problems["sources[1] wrong_map (wrong_map.csv)"]
    assert "'customer_id'" in wrong_map and "order_id, customerid, order_ts, amount" in wrong_map
    assert "closest to 'customer_id': 'customerid'" in wrong_map
    gbk = problems["sources[2] gbk (gbk.csv)"]
    assert "row 1" in gbk and "column 'customer_id'" in gbk and "`encoding: gb18030`" in gbk
    assert '`delimiter: ";"`' in problems["sources[3] semi (semi.csv)"]
    parquet = problems["sources[4] parquet (parquet.csv)"]
    assert "`format: parquet`" in parquet and "latin-1" not in parquet
    assert all("How to fix:" in m for m in problems.values())


def test_a_column_whose_sampled_values_mostly_fail_is_reported(tmp_path):
    bad = "order_id,customer_id,order_ts,amount\n" + "".join(f"O{i},C{i},2026-01-02,n/a\n" for i in range(40))
    one_bad = GOOD + "O3,C3,2026-01-04,n/a\n" + "".join(f"O{i},C{i},2026-01-02,5\n" for i in range(4, 100))
    problems = check_sources(_params(tmp_path, {"bad.csv": bad.encode(), "one_bad.csv": one_bad.encode()}))
    # one stray bad value in 100 rows is the run's business (it quarantines that row); 40 of 40 is a setting
    assert [w for w, _ in problems] == ["sources[0] bad (bad.csv)"]
    assert "40 of the first 40 data rows" in problems[0][1] and "bad_number:amount" in problems[0][1]


def test_only_a_sample_is_read(tmp_path):
    head = "".join(f"O{i},C{i},2026-01-02,5\n" for i in range(preflight.SAMPLE_ROWS))
    tail = "".join(f"O{i},C{i},2026-01-02,n/a\n" for i in range(preflight.SAMPLE_ROWS, 3 * preflight.SAMPLE_ROWS))
    params = _params(tmp_path, {"big.csv": ("order_id,customer_id,order_ts,amount\n" + head + tail).encode()})
    assert check_sources(params) == []


def test_ragged_rows_in_the_sample_point_at_the_delimiter(tmp_path):
    body = "".join(f"O{i},C{i},2026-01-02,5,surplus\n" for i in range(30))
    problems = check_sources(_params(tmp_path, {"ragged.csv": ("order_id,customer_id,order_ts,amount\n" + body).encode()}))
    assert len(problems) == 1 and "30 of the first 30 data rows do not split" in problems[0][1]
    assert "`delimiter:`" in problems[0][1]


def test_two_sources_of_one_file(tmp_path):
    params = _params(tmp_path, {"a.csv": GOOD.encode(), "b.csv": GOOD.encode()})
    problems = check_sources(params)
    assert len(problems) == 1 and problems[0][0] == "sources[0] a and sources[1] b"
    assert "same content" in problems[0][1] and "allow_duplicate_sources" in problems[0][1]
    params["ingest"]["allow_duplicate_sources"] = True
    assert check_sources(params) == []


def test_never_raises(tmp_path, monkeypatch):
    params = _params(tmp_path, {"gone.csv": GOOD.encode(), "boom.csv": GOOD.replace("O1", "X1").encode(),
                                "empty.csv": b""})
    Path(params["sources"][0]["path"]).unlink()
    real = readers.read_source

    def exploding(engine, source, **kw):
        if source["name"] == "boom":
            raise RuntimeError("a bug in a reader")
        return real(engine, source, **kw)

    monkeypatch.setattr(readers, "read_source", exploding)
    problems = dict(check_sources(params))
    assert "file not found" in problems["sources[0] gone (gone.csv)"]
    assert problems["sources[1] boom (boom.csv)"] == "cannot check this source: RuntimeError: a bug in a reader"
    assert "0 bytes" in problems["sources[2] empty (empty.csv)"]


@pytest.mark.parametrize("content, fix", [(b"\x00\x01\x02" * 1000, "`path:`"),
                                          (GOOD.encode("utf-16-le"), "`encoding: utf-16-le`")])
def test_text_that_is_no_text(tmp_path, content, fix):
    problems = check_sources(_params(tmp_path, {"weird.csv": content}))
    assert len(problems) == 1 and fix in problems[0][1].split("How to fix:")[1]
    assert "latin-1" not in problems[0][1]


def test_the_check_goes_on_behind_a_sniffed_setting(tmp_path):
    # the file is GBK *and* its header lacks the mapped column: both are reported by one `crm validate`
    content = "order_id,cust,order_ts,amount\nO1,王伟,2026-01-02,1\n".encode("gbk")
    problems = check_sources(_params(tmp_path, {"gbk.csv": content}))
    assert len(problems) == 2
    assert "`encoding: gb18030`" in problems[0][1]
    assert problems[1][1].startswith('once `encoding: "gb18030"` is set: ')
    assert "closest to 'customer_id': 'cust'" in problems[1][1]


def test_order_lines_are_checked_like_every_kind(tmp_path):
    lines = "order_id,product_id,quantity,amount\n" + "".join(f"O{i},P{i},1,\"12,{i:02d}\"\n" for i in range(20))
    params = _params(tmp_path, {"orders.csv": GOOD.encode()})
    (tmp_path / "data" / "lines.csv").write_text(lines, encoding="utf-8")
    raw_sources = [{"name": "orders", "kind": "orders", "path": params["sources"][0]["path"], "columns": IDS},
                   {"name": "lines", "kind": "order_lines", "path": str(tmp_path / "data" / "lines.csv")}]
    run = {"name": "pf", "timezone": "Asia/Shanghai", "output_dir": str(tmp_path)}
    problems = dict(check_sources(validate_params({"run": run, "sources": raw_sources}, tmp_path)))
    assert list(problems) == ["sources[1] lines (lines.csv)"]
    assert "bad_number:amount" in problems["sources[1] lines (lines.csv)"]
    # orders without an order_id column: the lines cannot be joined, said before any run
    (tmp_path / "data" / "orders.csv").write_text(GOOD.replace("order_id,", "ref,"), encoding="utf-8")
    (tmp_path / "data" / "lines.csv").write_text("order_id,product_id\nO1,P1\n", encoding="utf-8")
    problems = dict(check_sources(validate_params({"run": run, "sources": raw_sources}, tmp_path)))
    assert "orders source orders has no order_id column" in problems["sources[1] lines (lines.csv)"]
