"""The Splink part of identity resolution: comparison levels and comparison vectors of given pairs.

Kept apart from :mod:`crmlib.ingest.identity` so that Splink (and its import time) is only touched by
``method="splink"``. Splink gets two tables prepared by Ibis - the records in candidate pairs and the
candidate pairs themselves, registered as Splink's blocked pairs so that Splink compares exactly those
and generates no pairs of its own - and returns each pair's comparison vector. Where Splink computes
is the engine backend's business (``engine.backend.splink_db_api``: a private DuckDB connection, or
the engine's own Spark session). The model's parameters are fitted by :mod:`crmlib.ingest._identity_em`
(see there for why not Splink's own EM). Needs Splink >= 5 (``register_blocked_pairs_for_predict``).

String distances are counted in characters on every engine: the backend names the functions
(DuckDB's own ``levenshtein`` and ``jaro_winkler_similarity`` work on UTF-8 bytes, so one Chinese
character counted as three edits there).
"""

from __future__ import annotations

import logging
from typing import Any

import ibis

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


def model_settings(
    *,
    levenshtein_function: str = "levenshtein",
    jaro_winkler_function: str = "jaro_winkler_similarity",
    dialect: str = "duckdb",
    retain_comparison_vectors: bool = False,
):
    """Splink settings: comparisons on the shared identifiers, name, gender, birth date and city.

    identifiers (one comparison, so that its levels carry the interaction naive Bayes would miss:
    relatives share a phone but not a mailbox, colleagues a mailbox but not a phone): email and phone
    both agree / email agrees, phone unknown / email agrees, phones differ / phone agrees, email
    unknown / phone agrees, emails differ / neither (pairs found by name + birth date only).
    name: exact / Levenshtein <= 1 *character* (one Chinese character, or one Latin letter) /
    Jaro-Winkler >= 0.88 over characters / else. birth_date: exact / one character off (a typed digit)
    / else. gender, city: exact / else. Family members share surname, phone and city, so the decision
    rests on several fields, never on the name alone.

    Parameters
    ----------
    levenshtein_function, jaro_winkler_function : str
        SQL names of the character-based distances on the backend Splink runs on
        (``SplinkDatabase.levenshtein_function`` / ``jaro_winkler_function`` of the engine's backend).
    dialect : str
        SQL dialect the custom levels are written in (double-quoted identifiers: ``"duckdb"``); Splink
        transpiles them to the backend's.
    retain_comparison_vectors : bool
        Keep the ``gamma_`` columns in Splink's predictions.
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    def level(sql: str, label: str):
        return cll.CustomLevel(sql, label, base_dialect_str=dialect)

    def null_level(col: str):
        return cll.CustomLevel(f'"{col}_l" IS NULL OR "{col}_r" IS NULL', f"{col} is NULL",
                               base_dialect_str=dialect).configure(is_null_level=True)

    def exact(col: str):
        return level(f'"{col}_l" = "{col}_r"', f"Exact match on {col}")

    def within_characters(col: str, edits: int):
        return level(f'{levenshtein_function}("{col}_l", "{col}_r") <= {edits}',
                     f"Levenshtein distance of {col} <= {edits} character{'s' if edits > 1 else ''}")

    name = cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            null_level("name"),
            exact("name"),
            within_characters("name", 1),
            level(f'{jaro_winkler_function}("name_l", "name_r") >= 0.88', "Jaro-Winkler similarity of name >= 0.88"),
            cll.ElseLevel(),
        ],
        comparison_description="name: exact / one character / jaro-winkler >= 0.88 (in characters)",
    )
    email_eq, phone_eq = '"email_l" = "email_r"', '"phone_l" = "phone_r"'
    email_unknown = '("email_l" IS NULL OR "email_r" IS NULL)'
    phone_unknown = '("phone_l" IS NULL OR "phone_r" IS NULL)'
    identifiers = cl.CustomComparison(
        output_column_name="identifiers",
        comparison_levels=[
            level(f"{email_eq} AND {phone_eq}", "email and phone agree"),
            level(f"{email_eq} AND {phone_unknown}", "email agrees, phone unknown"),
            level(f"{email_eq}", "email agrees, phones differ"),
            level(f"{phone_eq} AND {email_unknown}", "phone agrees, email unknown"),
            level(f"{phone_eq}", "phone agrees, emails differ"),
            cll.ElseLevel(),
        ],
        comparison_description="shared identifiers (email x phone)",
    )
    birth_date = cl.CustomComparison(
        output_column_name="birth_date",
        comparison_levels=[
            null_level("birth_date"),
            exact("birth_date"),
            within_characters("birth_date", 1),
            cll.ElseLevel(),
        ],
        comparison_description="birth_date: exact / one character off",
    )

    def exact_comparison(col: str):
        return cl.CustomComparison(output_column_name=col,
                                   comparison_levels=[null_level(col), exact(col), cll.ElseLevel()],
                                   comparison_description=f"{col}: exact")

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            identifiers,
            name,
            exact_comparison("gender"),
            birth_date,
            exact_comparison("city"),
        ],
        # Prediction scores the registered candidate pairs; these rules only document the blocking.
        blocking_rules_to_generate_predictions=[block_on("email"), block_on("phone")],
        # Splink 5 keeps the gamma_ (comparison vector) columns only with the matching columns.
        retain_matching_columns=retain_comparison_vectors,
        retain_intermediate_calculation_columns=False,
    )


def comparison_vectors(
    database: Any, records: ibis.Table, pairs: ibis.Table
) -> tuple[ibis.Table, dict[str, int], dict[str, list[str]]]:
    """Compute Splink comparison vectors for exactly the given pairs.

    Parameters
    ----------
    database : SplinkDatabase
        ``engine.backend.splink_db_api(engine)``: where Splink computes, and how tables go in and
        out (a private DuckDB connection, or the engine's Spark session).
    records : ibis.Table
        unique_id, name, email, phone, gender, birth_date, city.
    pairs : ibis.Table
        join_key_l, join_key_r (unique ids, join_key_l < join_key_r); registered as Splink's blocked
        pairs, so Splink generates no pairs of its own.

    Returns
    -------
    vectors : ibis.Table
        unique_id_l, unique_id_r and one ``gamma_<comparison>`` column per comparison
        (-1 null, 0 else ... L-1 exact), readable by the engine while ``database`` is open: store it
        (``engine.scratch``) before closing ``database``.
    n_levels : dict
        Number of non-null levels per comparison.
    labels : dict
        Level labels per comparison, from level 0 up.
    """
    from splink import Linker

    splink_logger = logging.getLogger("splink")
    old_level = splink_logger.level
    splink_logger.setLevel(logging.ERROR)
    try:
        settings = model_settings(levenshtein_function=database.levenshtein_function,
                                  jaro_winkler_function=database.jaro_winkler_function,
                                  dialect=database.dialect, retain_comparison_vectors=True)
        linker = Linker(database.register(records, "identity_records"), settings, log_level=None)
        blocked = pairs.select(match_key=ibis.literal("0"), join_key_l=pairs.join_key_l,
                               join_key_r=pairs.join_key_r)
        linker.table_management.register_blocked_pairs_for_predict(database.register(blocked, "identity_pairs"))
        predictions = linker.inference.predict(warning_mode="never")
        n_levels, labels = {}, {}
        for comparison in linker.misc.save_model_to_json()["comparisons"]:
            levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
            name = comparison["output_column_name"]
            n_levels[name] = len(levels)  # Splink numbers them L-1 (first listed) down to 0 (else)
            labels[name] = [lv.get("label_for_charts", lv["sql_condition"]) for lv in reversed(levels)]
        columns = ["unique_id_l", "unique_id_r"] + [f"gamma_{k}" for k in n_levels]
        return database.result(predictions.physical_name, columns), n_levels, labels
    finally:
        splink_logger.setLevel(old_level)
