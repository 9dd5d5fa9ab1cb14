"""Order lines of the sample's e-shop orders: a product catalogue, repurchase cycles, bought-together pairs.

The lines are drawn from their own random stream (``default_rng([seed, ORDER_LINES_STREAM])``) after
every other file is written, so adding them changed no byte of the older files. Planted structure
(written to ``truth/``):

- popularity follows a long tail (Zipf-Mandelbrot, ``1 / (1 + ZIPF_OFFSET + rank) ** ZIPF_EXPONENT``
  over a shuffled catalogue), and half of a customer's picks come from one favourite category;
- replenishable products have a repurchase cycle (``repurchase_days``): a customer whose online
  orders come at least twice as often as a product's cycle may carry it as their cycle product
  (chosen with weight ``1 / repurchase_days ** 2`` among those they qualify for), and
  then buys it in the first order after every cycle (cycle lengths jittered by
  ``CYCLE_JITTER``); the customer's other picks never land on their cycle product;
- bought-together pairs (``PAIRS``): when an order of two or more units holds one product of a pair,
  its next unit is the other product with probability ``PAIR_PROBABILITY``.

Conventions of ``order_lines.csv``: one line per distinct product of an order; ``quantity`` is the
number of units (a sale's quantities sum to its ``items`` in ``eshop_orders.csv``); ``amount`` is
the line's share of the order amount, allocated by list price x quantity to the cent, so the lines
of an order sum exactly to its amount. A full refund (``-R`` order whose amount is minus the sale's)
repeats the sale's lines with negative quantities and amounts; a partial refund returns the sale's
first units (never more units than were bought) with negative quantities, its amount allocated the
same way. A refund row's ``items`` in ``eshop_orders.csv`` was drawn independently of its sale and is
not reconciled with its lines. Orders appear once per order id: the duplicated rows of
``eshop_orders.csv`` (exact copies and id conflicts) have no lines of their own; an order whose amount
was corrupted in the file (``bad_amount``) has lines summing to its true amount (``truth/orders.parquet``).
Categories are Chinese names (``护肤``, ``数码配件``, ...), as a Chinese brand's product master has them.
Only the e-shop orders have lines: the store receipts (``store_pos.csv``) have none.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._common import DAY, _EPOCH_START, _amount_str, _ids, _write_chunked

__all__ = ["ORDER_LINES_FILE", "ORDER_LINES_STREAM", "PAIRS", "build_catalogue", "eshop_order_base",
           "write_order_lines"]

ORDER_LINES_FILE = "order_lines.csv"
ORDER_LINES_STREAM = 14  # default_rng([seed, 14]): a stream no older file draws from
ZIPF_EXPONENT = 1.1
ZIPF_OFFSET = 5  # Zipf-Mandelbrot: a flatter head, so no single product sits in every basket
FAVOURITE_CATEGORY_SHARE = 0.5
PAIR_PROBABILITY = 0.6
CYCLE_CARRIER_SHARE = 0.7  # of the customers frequent enough for at least one replenishable product
CYCLE_JITTER = 0.1
MIN_SALES_FOR_CYCLE = 4

# category -> (brand, [(base name, [variants], list price, repurchase days or None)])
CATALOGUE: dict[str, tuple[str, list[tuple[str, list[str], float, int | None]]]] = {
    "护肤": ("悦颜", [
        ("保湿面霜", ["30ml", "50ml", "100ml"], 268.0, None),
        ("修护精华", ["15ml", "30ml", "50ml"], 328.0, None),
        ("氨基酸洁面乳", ["100g", "150g"], 89.0, 60),
        ("补水爽肤水", ["150ml", "300ml"], 129.0, None),
        ("防晒乳 SPF50", ["30ml", "50ml"], 139.0, None),
        ("补水面膜", ["5片装", "10片装", "20片装"], 99.0, 21),
        ("紧致眼霜", ["15ml", "20ml"], 259.0, None),
        ("舒缓乳液", ["100ml", "200ml"], 159.0, None),
        ("精华油", ["15ml", "30ml"], 199.0, None),
    ]),
    "彩妆": ("悦颜", [
        ("丝绒口红", ["#01 正红", "#02 豆沙", "#03 枫叶", "#04 奶茶", "#05 复古"], 169.0, None),
        ("粉底液", ["象牙白", "自然色", "小麦色"], 239.0, None),
        ("美妆蛋", ["单只", "3只装"], 29.0, None),
        ("卸妆水", ["200ml", "400ml"], 79.0, 45),
        ("眉笔", ["深棕", "浅棕", "灰黑"], 59.0, None),
        ("睫毛膏", ["纤长", "浓密"], 99.0, None),
        ("腮红", ["蜜桃", "玫瑰", "珊瑚"], 129.0, None),
        ("定妆喷雾", ["50ml", "100ml"], 89.0, None),
    ]),
    "洗护": ("植萃园", [
        ("洗发水", ["400ml", "750ml"], 69.0, 30),
        ("护发素", ["400ml", "750ml"], 69.0, None),
        ("沐浴露", ["500ml", "1L"], 59.0, 40),
        ("身体乳", ["250ml", "400ml"], 89.0, None),
        ("护手霜", ["30ml", "3支装"], 39.0, None),
        ("发膜", ["200ml", "500ml"], 79.0, None),
        ("洗手液", ["300ml", "500ml 补充装"], 29.0, None),
        ("干发帽", ["粉色", "灰色"], 25.0, None),
    ]),
    "口腔护理": ("植萃园", [
        ("牙膏", ["薄荷 120g", "清新 120g", "美白 120g", "草本 120g"], 29.0, 45),
        ("电动牙刷", ["标准款", "旗舰款"], 299.0, None),
        ("牙刷刷头", ["2支装", "4支装"], 79.0, 90),
        ("漱口水", ["250ml", "500ml"], 39.0, None),
        ("牙线棒", ["50支", "100支"], 19.0, None),
        ("儿童牙膏", ["草莓 50g", "香橙 50g"], 25.0, None),
    ]),
    "母婴": ("小熊宝宝", [
        ("婴儿纸尿裤", ["S 码", "M 码", "L 码", "XL 码"], 139.0, 14),
        ("婴儿湿巾", ["80抽", "80抽×6包"], 49.0, 20),
        ("婴儿奶粉", ["1段 800g", "2段 800g", "3段 800g"], 298.0, 25),
        ("奶瓶", ["160ml", "240ml"], 89.0, None),
        ("婴儿洗发沐浴露", ["300ml", "500ml"], 69.0, None),
        ("婴儿润肤霜", ["50g", "100g"], 79.0, None),
        ("儿童餐具", ["三件套", "五件套"], 59.0, None),
    ]),
    "家居清洁": ("净立方", [
        ("洗衣液", ["2kg", "3kg"], 59.0, 45),
        ("洗洁精", ["1kg", "1.5kg"], 25.0, None),
        ("消毒湿巾", ["50片", "100片"], 29.0, None),
        ("垃圾袋", ["中号 100只", "大号 100只"], 19.0, 30),
        ("衣物柔顺剂", ["1L", "2L"], 45.0, None),
        ("厨房湿巾", ["40片", "80片"], 19.0, None),
        ("抽纸", ["6包", "24包"], 39.0, 30),
    ]),
    "零食": ("味研所", [
        ("每日坚果", ["7袋装", "30袋装"], 119.0, 30),
        ("牛肉干", ["原味", "麻辣", "五香"], 49.0, None),
        ("海苔", ["原味", "芝麻"], 29.0, None),
        ("燕麦片", ["500g", "1kg"], 39.0, None),
        ("黑巧克力", ["70%", "85%"], 35.0, None),
        ("果干", ["芒果", "草莓", "蓝莓"], 29.0, None),
        ("苏打饼干", ["原味", "海盐"], 19.0, None),
    ]),
    "咖啡茶饮": ("味研所", [
        ("咖啡豆", ["意式拼配 454g", "哥伦比亚 454g", "埃塞俄比亚 454g", "云南 454g"], 98.0, 28),
        ("挂耳咖啡", ["10片", "30片"], 59.0, 21),
        ("咖啡滤纸", ["100张"], 19.0, None),
        ("手冲壶", ["600ml"], 169.0, None),
        ("茶包", ["绿茶", "红茶", "乌龙"], 39.0, None),
        ("冷萃咖啡液", ["6瓶", "12瓶"], 69.0, None),
        ("咖啡杯", ["350ml", "450ml"], 59.0, None),
    ]),
    "宠物": ("萌宠家", [
        ("猫粮", ["1.5kg", "3kg", "6kg"], 129.0, 30),
        ("猫砂", ["6L", "10L"], 49.0, 21),
        ("狗粮", ["2kg", "5kg"], 149.0, 35),
        ("宠物零食", ["鸡肉条", "冻干"], 39.0, None),
        ("猫抓板", ["标准款", "大号"], 49.0, None),
        ("猫罐头", ["金枪鱼 6罐", "鸡肉 6罐"], 59.0, None),
        ("宠物洗护香波", ["300ml"], 49.0, None),
    ]),
    "数码配件": ("极客派", [
        ("运动相机", ["4K", "5K"], 1299.0, None),
        ("存储卡", ["64GB", "128GB", "256GB"], 99.0, None),
        ("手机壳", ["iPhone 15", "iPhone 16", "华为 Mate 60", "小米 14"], 59.0, None),
        ("钢化膜", ["iPhone 15", "iPhone 16", "华为 Mate 60", "小米 14"], 29.0, None),
        ("充电宝", ["10000mAh", "20000mAh"], 129.0, None),
        ("数据线", ["1m", "2m"], 39.0, None),
        ("蓝牙耳机", ["标准款", "降噪款"], 399.0, None),
        ("充电器", ["20W", "65W"], 99.0, None),
        ("手机支架", ["桌面款", "车载款"], 39.0, None),
    ]),
}
# planted bought-together pairs, by product name (base name + variant)
PAIRS: list[tuple[str, str]] = [
    ("保湿面霜 50ml", "修护精华 30ml"),
    ("氨基酸洁面乳 150g", "补水爽肤水 150ml"),
    ("粉底液 自然色", "美妆蛋 3只装"),
    ("洗发水 400ml", "护发素 400ml"),
    ("电动牙刷 标准款", "牙刷刷头 4支装"),
    ("运动相机 4K", "存储卡 128GB"),
    ("手机壳 iPhone 16", "钢化膜 iPhone 16"),
    ("咖啡豆 意式拼配 454g", "咖啡滤纸 100张"),
    ("猫粮 3kg", "猫砂 10L"),
    ("婴儿纸尿裤 M 码", "婴儿湿巾 80抽×6包"),
]


def build_catalogue(rng: np.random.Generator) -> dict:
    """The product catalogue with list prices, repurchase cycles and long-tail popularity.

    Parameters
    ----------
    rng : numpy.random.Generator
        The order-lines stream; it shuffles which products are popular and jitters list prices.

    Returns
    -------
    dict
        Arrays indexed by product number: ``product_id``, ``name``, ``category``, ``brand``,
        ``price``, ``repurchase_days`` (0: none), ``popularity`` (sums to 1), ``category_code``.
    """
    names, cats, brands, prices, cycles = [], [], [], [], []
    for category, (brand, items) in CATALOGUE.items():
        for base, variants, price, cycle in items:
            for v_i, variant in enumerate(variants):
                names.append(f"{base} {variant}")
                cats.append(category)
                brands.append(brand)
                prices.append(price * (1.0 + 0.35 * v_i))  # bigger sizes cost more
                cycles.append(cycle or 0)
    k = len(names)
    price = np.round(np.asarray(prices) * rng.uniform(0.9, 1.1, k), 0) - 0.1  # shelf prices end in .9
    rank = rng.permutation(k)
    popularity = 1.0 / (1.0 + ZIPF_OFFSET + rank) ** ZIPF_EXPONENT
    category_names = list(CATALOGUE)
    return {
        "product_id": np.array([f"PRD{i + 1:04d}" for i in range(k)], dtype=object),
        "name": np.asarray(names, dtype=object), "category": np.asarray(cats, dtype=object),
        "brand": np.asarray(brands, dtype=object), "price": price,
        "repurchase_days": np.asarray(cycles, dtype=np.int64),
        "popularity": popularity / popularity.sum(),
        "category_code": np.array([category_names.index(c) for c in cats], dtype=np.int64),
    }


def _draw_within(cum_key: np.ndarray, order: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw one product per slot from its group's popularity (cum_key = group + cumulative share)."""
    pos = np.searchsorted(cum_key, group + u, side="right")
    return order[np.minimum(pos, len(order) - 1)]


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., counts[i] - 1 for every i, concatenated."""
    return np.arange(int(counts.sum())) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)


def _allocate_cents(order_of_line: np.ndarray, weight: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """Split each order's cents over its lines by weight: one cent each, the rest by largest remainder.

    ``order_of_line`` is sorted and ``cents[order]`` is at least the order's number of lines.
    """
    n_orders = len(cents)
    lines_per = np.bincount(order_of_line, minlength=n_orders)
    spare = cents - lines_per
    w_sum = np.bincount(order_of_line, weights=weight, minlength=n_orders)
    share = spare[order_of_line] * weight / w_sum[order_of_line]
    base = np.floor(share).astype(np.int64)
    left = spare - np.bincount(order_of_line, weights=base, minlength=n_orders).astype(np.int64)
    frac = share - base
    by_frac = np.argsort(order_of_line + 0.5 * (1.0 - frac), kind="stable")  # by order, largest remainder first
    starts = np.r_[0, np.cumsum(lines_per)[:-1]]
    rank = np.empty(len(weight), dtype=np.int64)
    rank[by_frac] = np.arange(len(weight)) - starts[order_of_line[by_frac]]
    return 1 + base + (rank < left[order_of_line])


def eshop_order_base(o: dict, items_of_base: np.ndarray) -> dict:
    """One entry per distinct e-shop order (a sale or a refund), from `orders._build_order_file`'s output.

    Parameters
    ----------
    o : dict
        The e-shop file's rows as built by ``_build_order_file`` (its ``base_*`` arrays).
    items_of_base : numpy.ndarray
        ``items`` of every distinct order, as written to ``eshop_orders.csv``.

    Returns
    -------
    dict
        ``order_id`` (pyarrow strings as in the file), ``person``, ``ts``, ``amount``, ``refund``,
        ``sale_of`` (position of a refund's sale, -1 for sales) and ``items``, in file order.
    """
    src, refund = o["base_src"], o["base_refund"]
    sale_at = np.full(int(src.max()) + 1 if len(src) else 0, -1)
    sales = np.flatnonzero(~refund)
    sale_at[src[sales]] = sales
    sale_id = _ids("EO", 100_000_001 + src, 9)
    order_id = pc.if_else(pa.array(refund), pc.binary_join_element_wise(sale_id, "-R", ""), sale_id)
    return {"order_id": order_id, "person": o["base_person"].astype(np.int64), "ts": o["base_ts"],
            "amount": o["base_amount"], "refund": refund, "sale_of": np.where(refund, sale_at[src], -1),
            "items": np.asarray(items_of_base)}


def write_order_lines(out: Path, truth_dir: Path, seed: int, base: dict, paths: dict, rows: dict) -> None:
    """Write ``order_lines.csv`` for the e-shop orders and the catalogue / pairs truth.

    Parameters
    ----------
    out, truth_dir : Path
        Data folder and its ``truth`` folder.
    seed : int
        The sample's seed; the lines use ``default_rng([seed, ORDER_LINES_STREAM])``.
    base : dict
        One entry per distinct e-shop order (sales and refunds in file order): ``order_id`` (str),
        ``person``, ``ts`` (true local seconds), ``amount``, ``refund`` (bool), ``sale_of`` (index of
        a refund's sale in these arrays, -1 for sales), ``items``.
    paths, rows : dict
        The summary's paths and row counts, updated with ``order_lines``.
    """
    rng = np.random.default_rng([seed, ORDER_LINES_STREAM])
    cat = build_catalogue(rng)
    n_prod = len(cat["name"])
    n_cat = int(cat["category_code"].max()) + 1
    person, ts, amount = base["person"], base["ts"], base["amount"]
    refund, sale_of, items = base["refund"], base["sale_of"], base["items"].astype(np.int64)
    sales = np.flatnonzero(~refund)
    n_people = int(person.max()) + 1 if len(person) else 1

    # favourite category per customer, weighted by the category's popularity
    cat_pop = np.bincount(cat["category_code"], weights=cat["popularity"], minlength=n_cat)
    favourite = rng.choice(n_cat, n_people, p=cat_pop / cat_pop.sum())

    # cumulative popularity keys: group -1 is the whole catalogue, group c a category
    glob_order = np.argsort(-cat["popularity"], kind="stable")
    glob_cum = np.cumsum(cat["popularity"][glob_order])
    glob_cum /= glob_cum[-1]
    cat_order = np.lexsort((-cat["popularity"], cat["category_code"]))
    pop_c = cat["popularity"][cat_order]
    code_c = cat["category_code"][cat_order]
    cum_c = np.cumsum(pop_c)
    first = np.r_[0, np.flatnonzero(np.diff(code_c)) + 1]
    before = np.repeat(np.r_[0.0, cum_c[first[1:] - 1]], np.diff(np.r_[first, len(code_c)]))
    totals = np.bincount(code_c, weights=pop_c, minlength=n_cat)
    cat_key = code_c + (cum_c - before) / totals[code_c]

    # slots: one per unit of every sale
    s_items = items[sales]
    slot_order = np.repeat(np.arange(len(sales)), s_items)
    slot_person = person[sales][slot_order]
    n_slots = len(slot_order)
    in_fav = rng.random(n_slots) < FAVOURITE_CATEGORY_SHARE
    u = rng.random(n_slots)
    product = np.where(in_fav, _draw_within(cat_key, cat_order, favourite[slot_person], u),
                       _draw_within(glob_cum, glob_order, np.zeros(n_slots), u))

    # repurchase cycles: each frequent-enough customer may carry one replenishable product
    s_person, s_ts = person[sales], ts[sales]
    by_person = np.lexsort((s_ts, s_person))
    n_sales = np.bincount(s_person, minlength=n_people)
    first_ts = np.full(n_people, np.iinfo(np.int64).max)
    last_ts = np.zeros(n_people, dtype=np.int64)
    np.minimum.at(first_ts, s_person, s_ts)
    np.maximum.at(last_ts, s_person, s_ts)
    span_days = (last_ts - np.minimum(first_ts, last_ts)) / DAY
    mean_gap = np.where(n_sales > 1, span_days / np.maximum(n_sales - 1, 1), np.inf)
    repl = np.flatnonzero(cat["repurchase_days"] > 0)
    repl = repl[np.argsort(cat["repurchase_days"][repl], kind="stable")]
    repl_days = cat["repurchase_days"][repl]
    start = np.searchsorted(repl_days, 2.0 * np.minimum(mean_gap, 1e9), side="left")
    carrier = ((n_sales >= MIN_SALES_FOR_CYCLE) & (start < len(repl))
               & (rng.random(n_people) < CYCLE_CARRIER_SHARE))
    # the shortest cycle a customer qualifies for is the likeliest: few customers order often enough
    # for a 14- or 21-day cycle, and a cycle shows in the data only when enough customers carry it
    cum_w = np.cumsum(1.0 / repl_days.astype(float) ** 2)
    below = np.where(start > 0, cum_w[np.maximum(start - 1, 0)], 0.0)
    pick = np.searchsorted(cum_w, below + rng.random(n_people) * (cum_w[-1] - below), side="right")
    cycle_product = np.where(carrier, repl[np.minimum(pick, len(repl) - 1)], -1)
    # a carrier's random picks never land on their cycle product (it would blur the cycle): next product
    own = product == cycle_product[slot_person]
    product[own] = (product[own] + 1) % n_prod

    carriers = np.flatnonzero(carrier)
    cyc = cat["repurchase_days"][cycle_product[carriers]]
    shortest_cycle = cyc * DAY * (1 - CYCLE_JITTER)
    n_due = np.floor((last_ts[carriers] - first_ts[carriers]) / shortest_cycle).astype(np.int64) + 1
    due_owner = np.repeat(np.arange(len(carriers)), n_due)
    steps = cyc[due_owner] * DAY * rng.uniform(1 - CYCLE_JITTER, 1 + CYCLE_JITTER, len(due_owner))
    group_start = np.r_[0, np.cumsum(n_due)[:-1]]
    csum = np.cumsum(steps)
    offset = csum - steps - np.repeat(csum[group_start] - steps[group_start], n_due)  # 0 for the first
    due_ts = first_ts[carriers][due_owner] + offset.astype(np.int64)
    shift = np.int64(1) << np.int64(32)
    sale_key = s_person[by_person].astype(np.int64) * shift + (s_ts[by_person] - _EPOCH_START)
    due_person = carriers[due_owner]
    hit = np.searchsorted(sale_key, due_person.astype(np.int64) * shift + (due_ts - _EPOCH_START))
    valid = hit < len(sale_key)
    hit = hit[valid]
    due_person = due_person[valid]
    valid = s_person[by_person][hit] == due_person
    cycle_sale = np.unique(by_person[hit[valid]])  # sale positions (into `sales`) holding the cycle product
    slot_start = np.r_[0, np.cumsum(s_items)[:-1]]
    protected = np.zeros(n_slots, dtype=bool)
    first_slot = slot_start[cycle_sale]
    product[first_slot] = cycle_product[s_person[cycle_sale]]
    protected[first_slot] = True

    # bought-together pairs: the unit after a pair member becomes its partner
    index_of = {name: i for i, name in enumerate(cat["name"])}
    partner = np.full(n_prod, -1)
    pair_ids = []
    for a, b in PAIRS:
        ia, ib = index_of[a], index_of[b]
        partner[ia], partner[ib] = ib, ia
        pair_ids.append((ia, ib))
    rank_in_order = np.arange(n_slots) - slot_start[slot_order]
    has_next = rank_in_order + 1 < s_items[slot_order]
    trigger = np.flatnonzero(has_next & (partner[product] >= 0) & (rng.random(n_slots) < PAIR_PROBABILITY))
    trigger = trigger[~protected[trigger + 1]]
    product[trigger + 1] = partner[product[trigger]]

    # merge repeated products of a sale into quantities
    key = slot_order.astype(np.int64) * n_prod + product
    uniq, qty = np.unique(key, return_counts=True)  # sorted by sale, then product
    line_sale = (uniq // n_prod).astype(np.int64)
    line_prod = (uniq % n_prod).astype(np.int64)
    line_cents = _allocate_cents(line_sale, cat["price"][line_prod] * qty,
                                 np.round(np.abs(amount[sales]) * 100).astype(np.int64))
    sale_pos = np.full(len(person), -1)
    sale_pos[sales] = np.arange(len(sales))

    # refunds: a full refund negates the sale's lines, a partial one returns its first units
    refunds = np.flatnonzero(refund)
    src = sale_pos[sale_of[refunds]]
    full = np.isclose(amount[refunds], -amount[sales][src], atol=0.005)
    sale_line_start = np.searchsorted(line_sale, np.arange(len(sales)))
    sale_line_n = np.bincount(line_sale, minlength=len(sales))
    f_ref = refunds[full]
    f_n = sale_line_n[src[full]]
    f_lines = np.repeat(sale_line_start[src[full]], f_n) + _ranks(f_n)
    p_ref = refunds[~full]
    p_src = src[~full]
    p_cents = np.round(np.abs(amount[p_ref]) * 100).astype(np.int64)
    p_units = np.minimum(np.minimum(items[p_ref], s_items[p_src]), p_cents)
    p_slot = np.repeat(slot_start[p_src], p_units) + _ranks(p_units)
    p_owner = np.repeat(np.arange(len(p_ref)), p_units)
    p_key = p_owner.astype(np.int64) * n_prod + product[p_slot]
    p_uniq, p_qty = np.unique(p_key, return_counts=True)
    p_line_owner = (p_uniq // n_prod).astype(np.int64)
    p_line_prod = (p_uniq % n_prod).astype(np.int64)
    p_line_cents = _allocate_cents(p_line_owner, cat["price"][p_line_prod] * p_qty, p_cents)

    # all lines, in the order of the orders
    l_order = np.r_[sales[line_sale], f_ref[np.repeat(np.arange(len(f_ref)), f_n)], p_ref[p_line_owner]]
    l_prod = np.r_[line_prod, line_prod[f_lines], p_line_prod]
    l_qty = np.r_[qty, -qty[f_lines], -p_qty]
    l_cents = np.r_[line_cents, -line_cents[f_lines], -p_line_cents]
    arrange = np.lexsort((l_prod, l_order))
    l_order, l_prod, l_qty, l_cents = l_order[arrange], l_prod[arrange], l_qty[arrange], l_cents[arrange]

    v_pid = pa.array(cat["product_id"], pa.string())
    v_name = pa.array(cat["name"], pa.string())
    v_cat = pa.array(cat["category"], pa.string())
    v_brand = pa.array(cat["brand"], pa.string())
    order_ids = base["order_id"]

    def build(sl: slice) -> pa.Table:
        pr = pa.array(l_prod[sl])
        return pa.table({
            "order_id": order_ids.take(pa.array(l_order[sl])),
            "product_id": v_pid.take(pr),
            "quantity": pa.array(l_qty[sl].astype(np.int64)),
            "amount": _amount_str(l_cents[sl] / 100.0),
            "product_name": v_name.take(pr),
            "category": v_cat.take(pr),
            "brand": v_brand.take(pr),
        })

    paths["order_lines"] = out / ORDER_LINES_FILE
    _write_chunked(paths["order_lines"], len(l_order), build)
    rows["order_lines"] = int(len(l_order))

    pq.write_table(pa.table({
        "product_id": v_pid, "product_name": v_name, "category": v_cat, "brand": v_brand,
        "list_price": pa.array(cat["price"]),
        "repurchase_days": pa.array(np.where(cat["repurchase_days"] > 0, cat["repurchase_days"], None)
                                    .astype(object), pa.int64()),
        "popularity": pa.array(cat["popularity"]),
        "cycle_carriers": pa.array(np.bincount(cycle_product[carriers], minlength=n_prod).astype(np.int64)),
    }), truth_dir / "products.parquet")
    pq.write_table(pa.table({
        "product_id": pa.array([cat["product_id"][a] for a, _ in pair_ids], pa.string()),
        "other_product_id": pa.array([cat["product_id"][b] for _, b in pair_ids], pa.string()),
        "product_name": pa.array([cat["name"][a] for a, _ in pair_ids], pa.string()),
        "other_product_name": pa.array([cat["name"][b] for _, b in pair_ids], pa.string()),
        "p_next_unit_is_partner": pa.array(np.full(len(pair_ids), PAIR_PROBABILITY)),
    }), truth_dir / "bought_together.parquet")
    (truth_dir / "order_lines.json").write_text(json.dumps({
        "stream": [seed, ORDER_LINES_STREAM], "products": int(n_prod), "categories": list(CATALOGUE),
        "zipf_exponent": ZIPF_EXPONENT, "zipf_offset": ZIPF_OFFSET,
        "favourite_category_share": FAVOURITE_CATEGORY_SHARE,
        "pair_probability": PAIR_PROBABILITY, "cycle_carrier_share": CYCLE_CARRIER_SHARE,
        "cycle_jitter": CYCLE_JITTER, "min_sales_for_cycle": MIN_SALES_FOR_CYCLE,
        "cycle_carriers": int(len(carriers)), "orders_with_planted_cycle_product": int(len(cycle_sale)),
    }, indent=2, ensure_ascii=False), encoding="utf-8")
