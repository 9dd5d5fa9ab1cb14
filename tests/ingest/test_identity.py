"""Identity resolution: accuracy against truth on data with traps, keys, rules, union-find, EM."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from crmlib.engine import Engine
from crmlib.ingest._identity_em import fit_fellegi_sunter
from tests.ingest.support.identity_synth import make_identity_records
from crmlib.ingest.identity import RULES, _clusters, _union_find, pairwise_scores, resolve_identities

SALT = "test-salt"
# With cannot-links guarding precision, "more likely the same person than not" is the operating
# point that meets both targets (the default 0.9 trades recall for precision; see the test below).
THRESHOLD = 0.5

# Hand-made traps and one true person, added to the synthetic background so that the model (fitted
# on the background) judges them: a household sharing one phone, colleagues sharing one mailbox.
HAND = pd.DataFrame(
    [
        # household: one phone, clearly different people
        ("crm", "H1", "王建国", None, "+8613900000001", "M", "1960-01-01", "上海", None, "h1"),
        ("eshop", "H2", "王芳", None, "+8613900000001", "female", "1962-05-05", "上海", None, "h2"),
        ("store_cards", "H3", "王子轩", None, "+8613900000001", "男", "1990-03-03", "上海市", None, "h3"),
        # colleagues: one mailbox, different phones and names
        ("crm", "K1", "孙强", "info@acme.cn", "+8613900000011", "M", "1970-02-02", "北京", None, "k1"),
        ("crm", "K2", "周敏", "info@acme.cn", "+8613900000012", "F", "1985-06-06", "北京", None, "k2"),
        ("crm", "K3", "吴刚", "info@acme.cn", "+8613900000013", "M", "1991-09-09", "北京", None, "k3"),
        # one person in three systems: same mailbox, a name typo, a loyalty card named by linked id
        ("crm", "P1", "赵丽娟", "zhaolj@163.com", "+8613900000021", "F", "1980-01-01", "杭州", None, "p1"),
        ("eshop", "P2", "赵丽娟", "zhaolj@163.com", None, "female", None, "杭州", None, "p1"),
        ("store_cards", "P3", "赵丽涓", None, "+8613900000021", "女", "1980-01-01", "杭州", None, "p1"),
        ("eshop", "P4", None, None, None, None, None, None, " Store_Cards:P3 ; nowhere:X9", "p1"),
    ],
    columns=["source", "source_customer_id", "name", "email", "phone", "gender", "birth_date", "city",
             "linked_ids", "person_id"],
)


def _with_hand_records(records: pd.DataFrame, truth: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    hand = HAND.assign(birth_date=pd.to_datetime(HAND["birth_date"]).dt.date)
    hand["birth_date"] = hand["birth_date"].astype(object).where(hand["birth_date"].notna(), None)
    records = pd.concat([records, hand.drop(columns="person_id")], ignore_index=True)
    truth = pd.concat([truth.astype({"person_id": str}), hand[["source", "source_customer_id", "person_id"]]],
                      ignore_index=True)
    return records, truth


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    records, truth = make_identity_records(3000, seed=11)
    return _with_hand_records(records, truth)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    eng = Engine(tmp_path_factory.mktemp("identity"))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def splink_result(engine, data):
    records, _ = data
    # the stage hands over an Ibis table on the engine
    table = engine.scratch("test_identity_records", records)
    return resolve_identities(engine, table, method="splink", salt=SALT, match_threshold=THRESHOLD)


@pytest.fixture(scope="module")
def deterministic_result(engine, data):
    records, _ = data
    return resolve_identities(engine, records, method="deterministic", salt=SALT)


def _map(result) -> pd.DataFrame:
    return result.identity_map.to_pandas().set_index(["source", "source_customer_id"])


# -- accuracy against truth -------------------------------------------------------------------------


def test_data_contains_traps(data):
    records, truth = data
    merged = records.merge(truth, on=["source", "source_customer_id"])
    for column in ("phone", "email"):
        persons_per_value = merged.dropna(subset=[column]).groupby(column)["person_id"].nunique()
        assert (persons_per_value > 1).sum() >= 10, f"too few shared {column} traps"


def test_deterministic_baseline_falls_for_traps(deterministic_result, data):
    scores = pairwise_scores(deterministic_result.identity_map, data[1])
    assert scores["precision"] < 0.99  # the traps are really there
    assert scores["recall"] >= 0.98


def test_splink_meets_precision_and_recall_targets(splink_result, data):
    scores = pairwise_scores(splink_result.identity_map, data[1])
    assert scores["precision"] >= 0.99
    assert scores["recall"] >= 0.98
    assert splink_result.pairs.set_index("evidence").loc["phone", "rejected"] > 50  # households refused


def test_stricter_threshold_trades_recall_for_precision(engine, data, splink_result):
    strict = resolve_identities(engine, data[0], method="splink", salt=SALT, match_threshold=0.95)
    strict_scores = pairwise_scores(strict.identity_map, data[1])
    scores = pairwise_scores(splink_result.identity_map, data[1])
    assert strict_scores["precision"] >= scores["precision"] >= 0.99
    assert strict_scores["recall"] < scores["recall"]
    assert strict.n_customers > splink_result.n_customers


def test_hand_made_traps_and_person(splink_result, deterministic_result):
    keys = _map(splink_result)["customer_key"]
    household = [keys[("crm", "H1")], keys[("eshop", "H2")], keys[("store_cards", "H3")]]
    colleagues = [keys[("crm", "K1")], keys[("crm", "K2")], keys[("crm", "K3")]]
    person = {keys[("crm", "P1")], keys[("eshop", "P2")], keys[("store_cards", "P3")], keys[("eshop", "P4")]}
    assert len(set(household)) == 3
    assert len(set(colleagues)) == 3
    assert len(person) == 1
    det = _map(deterministic_result)["customer_key"]
    assert det[("crm", "H1")] == det[("eshop", "H2")] == det[("store_cards", "H3")]
    assert det[("crm", "K1")] == det[("crm", "K2")]


# -- result structure, keys, rules ------------------------------------------------------------------


def test_identity_map_covers_every_record_once(splink_result, data):
    records = data[0]
    im = splink_result.identity_map.to_pandas()
    assert len(im) == len(records) == splink_result.n_records
    assert not im.duplicated(["source", "source_customer_id"]).any()
    assert im["customer_key"].nunique() == splink_result.n_customers
    # guest ids with no attributes are customers of their own
    guests = im[im["source"] == "web_orders"]
    assert (guests["match_rule"] == "singleton").all()
    assert guests["customer_key"].is_unique


def test_links_form_a_spanning_forest(splink_result, deterministic_result):
    for result in (splink_result, deterministic_result):
        assert result.links_by_rule["links"].sum() == result.n_records - result.n_customers
        im = result.identity_map.to_pandas()
        size = im.groupby("customer_key")["customer_key"].transform("size")
        assert ((im["match_rule"] == "singleton") == (size == 1)).all()
        assert set(im["match_rule"]) - {"singleton"} <= set(result.links_by_rule["rule"])


def test_customer_key_is_salted_hash_of_smallest_record(splink_result):
    im = splink_result.identity_map.to_pandas()
    im["record_key"] = im["source"] + ":" + im["source_customer_id"]
    smallest = im.groupby("customer_key")["record_key"].min()
    expected = [hashlib.sha256((SALT + k).encode()).hexdigest()[:16] for k in smallest]
    assert list(smallest.index) == expected


def test_keys_are_deterministic_and_salted(engine, data):
    records = data[0].iloc[:1500]
    shuffled = records.sample(frac=1.0, random_state=3)
    def run(frame: pd.DataFrame, salt: str) -> pd.DataFrame:
        im = resolve_identities(engine, frame, method="deterministic", salt=salt).identity_map.to_pandas()
        return im.sort_values(["source", "source_customer_id"], ignore_index=True)

    a, b, c = run(records, "one"), run(shuffled, "one"), run(records, "two")
    pd.testing.assert_frame_equal(a, b)
    assert (a["customer_key"] != c["customer_key"]).all()
    assert a["customer_key"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_linked_ids_link_bare_records_and_count_dangling(engine):
    records = pd.DataFrame({
        "source": ["crm", "store_orders", "store_orders", "eshop", "eshop", "web"],
        "source_customer_id": ["C1", "K1", "K2", "E1", "E2", "W1"],
        "linked_ids": ["Store_Orders:K1; eshop:E1", None, None, None, "ghost:G7", "GHOST: G7 ;;bad"],
    })  # only the required columns plus linked_ids
    result = resolve_identities(engine, records, method="splink", salt=SALT)
    keys = _map(result)["customer_key"]
    assert keys[("crm", "C1")] == keys[("store_orders", "K1")] == keys[("eshop", "E1")]
    assert keys[("eshop", "E2")] == keys[("web", "W1")]  # both name the same absent record
    assert keys[("store_orders", "K2")] not in {keys[("crm", "C1")], keys[("eshop", "E2")]}
    assert result.n_customers == 3
    assert result.dangling_linked_ids == 2
    assert result.links_by_rule.set_index("rule").loc["linked_id", "links"] == 3
    assert _map(result)["match_rule"][("store_orders", "K2")] == "singleton"


def test_placeholder_identifier_is_skipped(engine):
    n = 60
    records = pd.DataFrame({
        "source": "crm", "source_customer_id": [f"C{i}" for i in range(n)],
        "email": "test@test.com", "name": [f"name{i}" for i in range(n)],
    })
    result = resolve_identities(engine, records, method="deterministic", salt=SALT, max_key_records=50)
    assert result.n_customers == n
    assert result.skipped_keys.set_index("kind").loc["email", "records"] == n


def test_bad_input_is_rejected(engine):
    dup = pd.DataFrame({"source": ["crm", "crm"], "source_customer_id": ["C1", "C1"]})
    with pytest.raises(ValueError, match="duplicate"):
        resolve_identities(engine, dup, salt=SALT)
    with pytest.raises(ValueError, match="method"):
        resolve_identities(engine, dup.iloc[:1], method="fuzzy", salt=SALT)
    with pytest.raises(ValueError, match="source_customer_id"):
        resolve_identities(engine, pd.DataFrame({"source": ["crm"]}), salt=SALT)
    with pytest.raises(ValueError, match="without source"):
        resolve_identities(engine, pd.DataFrame({"source": ["crm", "crm"], "source_customer_id": ["C1", None]}),
                           salt=SALT)


# -- building blocks against independent implementations -----------------------------------------------


def test_union_find_matches_scipy_components():
    rng = np.random.default_rng(5)
    n = 400
    left = rng.integers(0, n, 300)
    right = rng.integers(0, n, 300)
    keep = left != right
    edges = pd.DataFrame({"rid_l": np.minimum(left, right)[keep], "rid_r": np.maximum(left, right)[keep],
                          "rule": "email", "strength": 1.0})
    root, rule_of, links, refused = _union_find(n, edges)
    graph = coo_matrix((np.ones(len(edges)), (edges["rid_l"], edges["rid_r"])), shape=(n, n))
    n_comp, label = connected_components(graph, directed=False)
    assert len(np.unique(root)) == n_comp
    assert (pd.crosstab(root, label) > 0).sum(axis=1).max() == 1  # same partition
    assert all(root[i] == min(np.flatnonzero(root == root[i])) for i in range(n))  # root = smallest
    assert sum(links.values()) == n - n_comp and refused == 0
    assert set(np.flatnonzero(rule_of == "singleton")) == set(np.flatnonzero(np.bincount(label)[label] == 1))


def test_union_find_refuses_scored_link_across_cannot_link():
    # 0-1 same person (strong), 1-2 weak scored link, but 0 and 2 were judged different people
    edges = pd.DataFrame({"rid_l": [0, 1, 3], "rid_r": [1, 2, 4],
                          "rule": ["splink:email", "splink:phone", "linked_id"], "strength": [0.99, 0.91, 1.0]})
    cannot = pd.DataFrame({"rid_l": [0, 3], "rid_r": [2, 4]})
    root, rule_of, links, refused = _union_find(5, edges, cannot)
    assert root[0] == root[1] != root[2]
    assert root[3] == root[4]  # a linked id is explicit evidence: never refused
    assert refused == 1
    assert list(rule_of) == ["splink:email", "splink:email", "singleton", "linked_id", "linked_id"]


def random_graph(seed: int, n: int = 300, n_edges: int = 330, n_cannot: int = 120,
                 rules: tuple[str, ...] = RULES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accepted edges of ``rules`` with tied and distinct strengths, and cannot-links, on ``n`` records."""
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, n, n_edges), rng.integers(0, n, n_edges)
    keep = left != right
    edges = pd.DataFrame({"rid_l": np.minimum(left, right)[keep], "rid_r": np.maximum(left, right)[keep]})
    edges = edges.drop_duplicates().reset_index(drop=True)
    edges["rule"] = rng.choice(list(rules), len(edges))
    edges["strength"] = np.where(edges["rule"].str.startswith("splink:"), rng.choice([0.91, 0.95, 0.99], len(edges)), 1.0)
    a, b = rng.integers(0, n, n_cannot), rng.integers(0, n, n_cannot)
    cannot = pd.DataFrame({"rid_l": np.minimum(a, b), "rid_r": np.maximum(a, b)})[a != b].drop_duplicates()
    return edges.astype({"rid_l": "int64", "rid_r": "int64"}), cannot.astype("int64")


def assert_clusters_match_union_find(engine: Engine, edges: pd.DataFrame, cannot: pd.DataFrame | None) -> dict:
    """The engine's clustering equals the sequential union-find: roots, match rules, links, refusals."""
    ends = [edges[["rid_l", "rid_r"]].to_numpy()] + ([] if cannot is None else [cannot.to_numpy()])
    n = int(max(e.max() for e in ends if e.size)) + 1
    root, rule_of, links, refused = _union_find(n, edges, cannot)
    schema = {"rid_l": "int64", "rid_r": "int64", "rule": "string", "strength": "float64"}
    accepted = engine.scratch("test_edges", edges, schema=schema)
    cannot_table = None if cannot is None else engine.scratch(
        "test_cannot", cannot, schema={"rid_l": "int64", "rid_r": "int64"})
    assigned, links_engine, refused_engine, info = _clusters(engine, accepted, cannot_table)
    got = engine.to_pandas(assigned).sort_values("rid").reset_index(drop=True)
    linked = np.flatnonzero(rule_of != "singleton")
    assert got["rid"].tolist() == linked.tolist()
    assert got["root"].tolist() == root[linked].tolist()
    assert got["match_rule"].astype(str).tolist() == rule_of[linked].tolist()
    assert links_engine == links and refused_engine == refused
    engine.drop("test_edges", "test_cannot")
    return info


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_clusters_equal_union_find(engine, seed):
    edges, cannot = random_graph(seed)
    info = assert_clusters_match_union_find(engine, edges, cannot)
    assert info["conflicted_components"] > 0  # the driver path (cannot-links inside a component) is covered
    assert info["driver_records"] < 300
    info = assert_clusters_match_union_find(engine, edges, None)
    assert info["driver_records"] == 0  # no cannot-links: everything stays in the engine
    assert len(info["stages"]) == len(set(edges["rule"]))


def test_engine_clusters_follow_a_long_chain(engine):
    # a path 0-1-...-199 given in shuffled order: pointer jumping needs far fewer rounds than its length
    order = np.random.default_rng(4).permutation(199)
    edges = pd.DataFrame({"rid_l": order, "rid_r": order + 1, "rule": "email", "strength": 1.0})
    info = assert_clusters_match_union_find(engine, edges, None)
    assert info["stages"][0]["iterations"] <= 2 * np.log2(200)


def test_em_recovers_known_parameters():
    rng = np.random.default_rng(9)
    n, lam = 40_000, 0.3
    m = {"a": np.array([0.05, 0.15, 0.80]), "b": np.array([0.1, 0.9]), "c": np.array([0.2, 0.8])}
    u = {"a": np.array([0.70, 0.20, 0.10]), "b": np.array([0.6, 0.4]), "c": np.array([0.7, 0.3])}
    match = rng.random(n) < lam
    cols = {}
    for k in m:
        draw_m = rng.choice(len(m[k]), n, p=m[k])
        draw_u = rng.choice(len(u[k]), n, p=u[k])
        value = np.where(match, draw_m, draw_u)
        value[rng.random(n) < 0.1] = -1  # nulls carry no information
        cols[k] = value
    patterns = pd.DataFrame(cols).value_counts().rename("n").reset_index()
    fit = fit_fellegi_sunter(patterns, {k: len(v) for k, v in m.items()})
    assert fit.converged
    assert abs(fit.lambda_ - lam) < 0.03
    for k in m:
        np.testing.assert_allclose(fit.m[k], m[k], atol=0.03)
        np.testing.assert_allclose(fit.u[k], u[k], atol=0.03)
    # posterior by hand for one pattern (Bayes' rule)
    row = pd.DataFrame({"a": [2], "b": [-1], "c": [0]})
    odds = fit.lambda_ / (1 - fit.lambda_) * fit.m["a"][2] / fit.u["a"][2] * fit.m["c"][0] / fit.u["c"][0]
    assert fit.match_probability(row)[0] == pytest.approx(odds / (1 + odds))


def test_pairwise_scores_against_brute_force():
    rng = np.random.default_rng(2)
    n = 120
    truth = pd.DataFrame({"source": "s", "source_customer_id": [str(i) for i in range(n)],
                          "person_id": rng.integers(0, 40, n)})
    im = truth[["source", "source_customer_id"]].assign(customer_key=rng.integers(0, 45, n).astype(str))
    same_p = {(i, j) for i, j in itertools.combinations(range(n), 2)
              if truth.person_id[i] == truth.person_id[j]}
    same_k = {(i, j) for i, j in itertools.combinations(range(n), 2)
              if im.customer_key[i] == im.customer_key[j]}
    scores = pairwise_scores(im, truth)
    assert scores["precision"] == pytest.approx(len(same_p & same_k) / len(same_k))
    assert scores["recall"] == pytest.approx(len(same_p & same_k) / len(same_p))
    assert scores["true_pairs"] == len(same_p)


def test_name_and_birth_date_blocking_is_optional(engine, data, splink_result):
    records, truth = data
    wider = resolve_identities(engine, records, method="splink", salt=SALT, match_threshold=THRESHOLD,
                               block_on_name_birth_date=True)
    assert "name+birth_date" not in set(splink_result.pairs["evidence"])
    assert wider.pairs.set_index("evidence").loc["name+birth_date", "candidate_pairs"] > 0
    assert pairwise_scores(wider.identity_map, truth)["precision"] >= 0.99


def test_model_summary_is_a_proper_distribution(splink_result):
    model = splink_result.model
    assert set(model["comparison"]) == {"identifiers", "name", "gender", "birth_date", "city"}
    sums = model.groupby("comparison")[["m", "u"]].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    # agreeing on the exact name is evidence for a match, disagreeing on birth date against
    by_level = model.set_index(["comparison", "level"])["bayes_factor"]
    assert by_level[("name", "Exact match on name")] > 10
    assert by_level[("birth_date", "All other comparisons")] < 0.1
    assert 0 < splink_result.match_share < 1 and splink_result.em["converged"]


def test_splink_result_does_not_depend_on_row_order(engine, data, splink_result):
    shuffled = data[0].sample(frac=1.0, random_state=8)
    again = resolve_identities(engine, shuffled, method="splink", salt=SALT, match_threshold=THRESHOLD)
    a = splink_result.identity_map.to_pandas().sort_values(["source", "source_customer_id"], ignore_index=True)
    b = again.identity_map.to_pandas().sort_values(["source", "source_customer_id"], ignore_index=True)
    pd.testing.assert_frame_equal(a, b)


def test_tiny_input_decided_by_the_prior(engine):
    # Four records, two scored pairs: too few to learn from, the weak prior must still be sensible.
    records = pd.DataFrame(
        [("crm", "A1", "王伟", "ww@qq.com", "+8613800000001", "M", "1980-01-01", "上海"),
         ("eshop", "A2", "王伟", "ww@qq.com", "+8613800000001", "male", "1980-01-01", "上海"),
         ("crm", "F1", "李强", None, "+8613800000002", "M", "1960-01-01", "北京"),
         ("store_cards", "F2", "李娜", None, "+8613800000002", "女", "1990-01-01", "北京")],
        columns=["source", "source_customer_id", "name", "email", "phone", "gender", "birth_date", "city"],
    ).assign(birth_date=lambda f: pd.to_datetime(f["birth_date"]).dt.date)
    result = resolve_identities(engine, records, method="splink", salt=SALT)  # default threshold
    keys = _map(result)["customer_key"]
    assert keys[("crm", "A1")] == keys[("eshop", "A2")]
    assert keys[("crm", "F1")] != keys[("store_cards", "F2")]
    assert result.n_customers == 3
