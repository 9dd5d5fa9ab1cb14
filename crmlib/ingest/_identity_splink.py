"""The Splink part of identity resolution: comparison levels and comparison vectors of given pairs.

Kept apart from :mod:`crmlib.ingest.identity` so that Splink (and its import time) is only touched by
``method="splink"``. Splink gets two Arrow tables prepared by Ibis - the records in candidate pairs
and the candidate pairs themselves, registered as Splink's blocked pairs so that Splink compares
exactly those and generates no pairs of its own - and returns each pair's comparison vector. The
model's parameters are fitted by :mod:`crmlib.ingest._identity_em` (see there for why not Splink's
own EM). Needs Splink >= 5 (``register_blocked_pairs_for_predict``).
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

__all__ = ["comparison_vectors", "model_settings", "PRIOR_M", "PRIOR_U"]

#: Weakly informative priors per comparison level, listed from level 0 (else) up to the top level,
#: for matches (m) and for the non-matches *among candidate pairs* (u: relatives sharing a phone,
#: colleagues sharing a mailbox). Worth a few pairs: they decide only on tiny inputs.
PRIOR_M = {
    # else, phone agrees/emails differ, phone agrees/email unknown, email agrees/phones differ,
    # email agrees/phone unknown, both agree
    "identifiers": [0.02, 0.05, 0.35, 0.03, 0.25, 0.30],
    "name": [0.02, 0.03, 0.10, 0.85],  # else, jaro-winkler, one character, exact
    "gender": [0.02, 0.98],
    "birth_date": [0.03, 0.05, 0.92],  # else, one character off, exact
    "city": [0.05, 0.95],
}
PRIOR_U = {
    "identifiers": [0.02, 0.35, 0.35, 0.15, 0.10, 0.03],
    "name": [0.75, 0.05, 0.15, 0.05],
    "gender": [0.5, 0.5],
    "birth_date": [0.95, 0.03, 0.02],
    "city": [0.3, 0.7],
}


def model_settings(*, retain_comparison_vectors: bool = False):
    """Splink settings: comparisons on the shared identifiers, name, gender, birth date and city.

    identifiers (one comparison, so that its levels carry the interaction naive Bayes would miss:
    relatives share a phone but not a mailbox, colleagues a mailbox but not a phone): email and phone
    both agree / email agrees, phone unknown / email agrees, phones differ / phone agrees, email
    unknown / phone agrees, emails differ / neither (pairs found by name + birth date only).
    name: exact / Levenshtein <= 3 *bytes* (DuckDB counts UTF-8 bytes: one Chinese character, or up
    to three Latin letters) / Jaro-Winkler >= 0.88 / else. birth_date: exact / one character off (a
    typed digit) / else. gender, city: exact / else. Family members share surname, phone and city,
    so the decision rests on several fields, never on the name alone.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    name = cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name"),
            cll.LevenshteinLevel("name", 3),
            cll.JaroWinklerLevel("name", 0.88),
            cll.ElseLevel(),
        ],
        comparison_description="name: exact / one CJK char or <=3 Latin edits / jaro-winkler >= 0.88",
    )
    email_eq, phone_eq = '"email_l" = "email_r"', '"phone_l" = "phone_r"'
    email_unknown = '("email_l" IS NULL OR "email_r" IS NULL)'
    phone_unknown = '("phone_l" IS NULL OR "phone_r" IS NULL)'
    identifiers = cl.CustomComparison(
        output_column_name="identifiers",
        comparison_levels=[
            cll.CustomLevel(f"{email_eq} AND {phone_eq}", "email and phone agree"),
            cll.CustomLevel(f"{email_eq} AND {phone_unknown}", "email agrees, phone unknown"),
            cll.CustomLevel(f"{email_eq}", "email agrees, phones differ"),
            cll.CustomLevel(f"{phone_eq} AND {email_unknown}", "phone agrees, email unknown"),
            cll.CustomLevel(f"{phone_eq}", "phone agrees, emails differ"),
            cll.ElseLevel(),
        ],
        comparison_description="shared identifiers (email x phone)",
    )
    birth_date = cl.CustomComparison(
        output_column_name="birth_date",
        comparison_levels=[
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            cll.LevenshteinLevel("birth_date", 1),
            cll.ElseLevel(),
        ],
        comparison_description="birth_date: exact / one character off",
    )
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            identifiers,
            name,
            cl.ExactMatch("gender"),
            birth_date,
            cl.ExactMatch("city"),
        ],
        # Prediction scores the registered candidate pairs; these rules only document the blocking.
        blocking_rules_to_generate_predictions=[block_on("email"), block_on("phone")],
        # Splink 5 keeps the gamma_ (comparison vector) columns only with the matching columns.
        retain_matching_columns=retain_comparison_vectors,
        retain_intermediate_calculation_columns=False,
    )


def comparison_vectors(
    records: pa.Table, pairs: pa.Table, *, threads: int | None = None, memory_limit: str | None = None
) -> tuple[pa.Table, dict[str, int], dict[str, list[str]]]:
    """Compute Splink comparison vectors for exactly the given pairs.

    Splink runs on a private in-memory DuckDB connection: its many intermediate tables would
    otherwise be written to (and slow down) the run's database file.

    Parameters
    ----------
    records : pyarrow.Table
        unique_id, name, email, phone, gender, birth_date, city.
    pairs : pyarrow.Table
        join_key_l, join_key_r (unique ids, join_key_l < join_key_r); registered as Splink's blocked
        pairs, so Splink generates no pairs of its own.
    threads, memory_limit : DuckDB settings of the private connection (default DuckDB's).

    Returns
    -------
    vectors : pyarrow.Table
        unique_id_l, unique_id_r and one ``gamma_<comparison>`` column per comparison
        (-1 null, 0 else ... L-1 exact).
    n_levels : dict
        Number of non-null levels per comparison.
    labels : dict
        Level labels per comparison, from level 0 up.
    """
    from splink import DuckDBAPI, Linker

    config = {}
    if threads:
        config["threads"] = int(threads)
    if memory_limit:
        config["memory_limit"] = memory_limit
    con = duckdb.connect(":memory:", config=config)
    splink_logger = logging.getLogger("splink")
    old_level = splink_logger.level
    splink_logger.setLevel(logging.ERROR)
    try:
        db_api = DuckDBAPI(connection=con)
        splink_records = db_api.register(records, table_name="identity_records")
        linker = Linker(splink_records, model_settings(retain_comparison_vectors=True), log_level=None)
        blocked = pa.table({"match_key": pa.array(["0"] * pairs.num_rows, pa.string()),
                            "join_key_l": pairs["join_key_l"], "join_key_r": pairs["join_key_r"]})
        linker.table_management.register_blocked_pairs_for_predict(
            db_api.register(blocked, table_name="identity_pairs")
        )
        predictions = linker.inference.predict(warning_mode="never")
        n_levels, labels = {}, {}
        for comparison in linker.misc.save_model_to_json()["comparisons"]:
            levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
            name = comparison["output_column_name"]
            n_levels[name] = len(levels)  # Splink numbers them L-1 (first listed) down to 0 (else)
            labels[name] = [lv.get("label_for_charts", lv["sql_condition"]) for lv in reversed(levels)]
        columns = ["unique_id_l", "unique_id_r"] + [f"gamma_{k}" for k in n_levels]
        relation = con.table(predictions.physical_name).select(*columns)
        # DuckDB 1.5 deprecates fetch_arrow_table (removed in 2.0) in favour of to_arrow_table
        vectors = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.fetch_arrow_table()
        return vectors, n_levels, labels
    finally:
        splink_logger.setLevel(old_level)
        con.close()
