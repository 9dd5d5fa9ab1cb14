"""Shared constants and helpers of the sample generator: window, file names, formatting, ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq



AS_OF = "2026-06-30"
WINDOW_START = "2024-01-01"
DAY = 86_400
WEEK = 7 * DAY
_EPOCH_START = int(np.datetime64(WINDOW_START, "s").astype(np.int64))
_EPOCH_END = int((np.datetime64(AS_OF, "s") + np.timedelta64(1, "D")).astype(np.int64))  # exclusive

# source name (as used in params and in linked_ids) -> file name
SOURCE_FILES: dict[str, str] = {
    "crm_contacts": "crm_contacts.csv",
    "eshop_accounts": "eshop_accounts.jsonl",
    "store_cards": "store_cards.csv",
    "eshop_orders": "eshop_orders.csv",
    "store_pos": "store_pos.csv",
    "web_events": "web_events.parquet",
    "touchpoints": "touchpoints.csv",
    "marketing_spend": "marketing_spend.csv",
    "experiments": "experiments.csv",
    "surveys": "surveys.tsv",
}

STORE_CARD_COLUMNS: dict[str, str] = {
    "会员号": "source_customer_id", "姓名": "name", "手机": "phone", "性别": "gender",
    "生日": "birth_date", "城市": "city", "省份": "province", "注册日期": "signup_ts",
    "积分": "loyalty_points", "等级": "loyalty_tier",
}


# ----------------------------------------------------------------------------- small helpers
def _ts_array(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"))


def _fmt_ts(seconds: np.ndarray, fmt: str) -> pa.Array:
    """Format naive local seconds; casting is ~25x faster than pyarrow's strftime."""
    ts = _ts_array(seconds)
    if fmt == "%Y-%m-%d":
        return pc.cast(pc.cast(ts, pa.date32()), pa.string())
    text = pc.cast(ts, pa.string())  # 2025-03-14 18:22:05
    if fmt == "%Y-%m-%d %H:%M:%S":
        return text
    if fmt == "%Y/%m/%d %H:%M":
        return pc.replace_substring(pc.utf8_slice_codeunits(text, 0, 16), "-", "/")
    if fmt == "%Y-%m-%dT%H:%M:%S":
        return pc.replace_substring(text, " ", "T")
    return pc.strftime(ts, format=fmt)


def _write_chunked(path: Path, n_rows: int, build, kind: str = "csv", delimiter: str = ",",
                   chunk: int = 1_000_000) -> None:
    """Write build(slice) tables chunk by chunk, so big files never sit in memory as text."""
    writer = None
    for lo in range(0, max(n_rows, 1), chunk):
        tbl = build(slice(lo, min(lo + chunk, n_rows)))
        if writer is None:
            if kind == "csv":
                writer = pacsv.CSVWriter(path, tbl.schema, write_options=pacsv.WriteOptions(
                    quoting_style="needed", delimiter=delimiter, batch_size=65_536))
            else:
                writer = pq.ParquetWriter(path, tbl.schema)
        writer.write_table(tbl)
    writer.close()


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(np.asarray(numbers, dtype=np.int64)), pa.string()),
                          width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _mask(arr: pa.Array, null_mask: np.ndarray) -> pa.Array:
    """Set entries to null where null_mask is true."""
    if not null_mask.any():
        return arr
    return pc.if_else(pa.array(null_mask), pa.scalar(None, arr.type), arr)


def _replace(arr: pa.Array, where: np.ndarray, values: np.ndarray) -> pa.Array:
    """Replace arr[where] (boolean mask) by the strings in values (len == where.sum())."""
    if not where.any():
        return arr
    full = np.empty(len(arr), dtype=object)
    full[where] = values
    return pc.if_else(pa.array(where), pa.array(full, type=pa.string()), arr)


def _amount_str(amount: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(np.round(amount, 2)), pa.string())


def _write_csv(table: pa.Table, path: Path, delimiter: str = ",") -> None:
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(
        quoting_style="needed", delimiter=delimiter, batch_size=65_536))


def _release_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise; keeps peak RSS low at 1M)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _group_rank(groups: np.ndarray) -> np.ndarray:
    """0-based rank of each element inside its run of equal, contiguous group values."""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, groups[1:] != groups[:-1]]
    start_idx = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    return np.arange(n) - start_idx


def _day(date: str) -> int:
    return int((np.datetime64(date, "s").astype(np.int64) - _EPOCH_START) // DAY)


def _time_of_day(rng: np.random.Generator, n: int, store: bool) -> np.ndarray:
    """Seconds after midnight: stores open 10:00-22:00, online peaks in the evening."""
    if store:
        weights = np.array([0] * 10 + [4, 6, 8, 7, 6, 6, 7, 8, 9, 10, 8, 5] + [0, 0], dtype=float)
    else:
        weights = np.array([2, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 4, 5, 6, 7, 6, 5, 5, 5, 6, 7, 8,
                            10, 11, 9, 5], dtype=float)
    hour = rng.choice(24, size=n, p=weights / weights.sum())
    return hour * 3600 + rng.integers(0, 3600, size=n)


def _person_ids(person: np.ndarray) -> pa.Array:
    return _ids("P", np.asarray(person) + 1, 7)
