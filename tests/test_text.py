"""crmlib.text.comment_terms: the countable words of a comment, and no personal data among them."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata

import pytest

from crmlib import text
from crmlib.sample.vocab import SURVEY_COMMENTS
from crmlib.text import STOP_WORDS, comment_terms


def test_chinese_comment_keeps_its_topic_words_and_drops_particles():
    terms = comment_terms("物流太慢了，客服不回复！")
    assert "物流" in terms and "客服" in terms and "回复" in terms
    assert not {"了", "不", "，", "！"} & set(terms)


def test_chinese_name_phone_and_email_never_come_out():
    comment = "我是王小明，李经理服务很好，请联系张先生 138-1234-5678 或 wxm@example.com，快递太慢"
    terms = comment_terms(comment)
    joined = "".join(terms)
    for piece in ("王小明", "小明", "李", "张", "138", "1234", "5678", "wxm", "example", "com", "@"):
        assert piece not in joined, (piece, terms)
    assert "快递" in terms and "服务" in terms


@pytest.mark.parametrize("comment, names", [
    ("欧阳娜娜说快递太慢", ("欧阳", "娜娜")),
    ("陈静女士反映退货难", ("陈静", "陈")),
    ("小王很热情，老李不行", ("小王", "老李")),
    ("刘德华买的鞋子质量差", ("刘德华",)),
])
def test_chinese_name_forms_are_dropped(comment, names):
    terms = comment_terms(comment)
    assert not set(names) & set(terms), terms
    assert terms, "the rest of the comment is still counted"


def test_english_names_phone_and_email_never_come_out():
    comment = ("Delivery was slow, John Smith never called back. Thanks to Mary and Mr. Brown: "
               "call +44 171 555 0199 or mail john.smith@mail.co.uk")
    terms = comment_terms(comment)
    for piece in ("john", "smith", "mary", "brown", "171", "555", "0199", "mail.co", "uk"):
        assert not any(piece in term for term in terms), (piece, terms)
    assert terms[:2] == ["delivery", "slow"]
    assert "called" in terms


def test_full_width_digits_web_addresses_and_handles_are_dropped():
    terms = comment_terms("订单号２０２４０１０１１２３没到货，手机：１３９１２３４５６７８，见 https://x.cn/a?b=1 @kefu_01")
    assert not any(ch.isdigit() for term in terms for ch in term)
    assert not any("x.cn" in term or "kefu" in term or "http" in term for term in terms)
    assert "到货" in terms


def test_pasted_account_names_are_dropped():
    terms = comment_terms("加我微信 wxid_zhangsan 或 zhang.san_88，会员号 vip2024abc，屏幕坏了")
    assert not any("zhang" in t or "san" in t or "vip" in t or "wxid" in t for t in terms), terms
    assert "屏幕" in terms


def test_excluded_names_are_removed_whatever_the_rules_would_keep():
    # a lone first name opening a sentence is the case the rules keep; the caller's name list catches it
    assert "anna" in comment_terms("Anna was helpful")
    assert "anna" not in comment_terms("Anna was helpful", exclude=["Anna Lee"])
    assert comment_terms("Anna was helpful", exclude=["Anna Lee"]) == ["helpful"]


def test_english_is_lower_cased_and_stop_words_are_dropped():
    terms = comment_terms("The refund was NOT processed and the app crashes")
    assert terms == ["refund", "processed", "app", "crashes"]
    assert not set(terms) & STOP_WORDS


@pytest.mark.parametrize("empty", ["", "   ", None, float("nan"), "，。！？"])
def test_empty_or_missing_comments_give_no_terms(empty):
    assert comment_terms(empty) == []


def test_terms_of_the_sample_comments_come_from_their_comment():
    comments = [c for group in SURVEY_COMMENTS.values() for c in group if c]
    assert len(comments) > 5
    for comment in comments:
        terms = comment_terms(comment)
        folded = unicodedata.normalize("NFKC", comment).lower()
        assert all(term in folded for term in terms), (comment, terms)
        assert not any(ch.isdigit() for term in terms for ch in term)
    assert comment_terms("物流太慢了") == ["物流", "太慢"]


def test_dictionary_loads_once_and_silently(tmp_path):
    assert text._posseg() is text._posseg()
    # a fresh process with an empty cache: the dictionary is built, nothing reaches stderr
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c",
         "from crmlib.text import comment_terms; print(comment_terms('张伟说快递太慢了'))"],
        capture_output=True, text=True, env=env, check=True)
    assert done.stderr == ""
    assert "快递" in done.stdout and "张伟" not in done.stdout
    assert (tmp_path / "crmlib" / "jieba.cache").exists()


def test_excluded_chinese_name_also_removes_the_given_name():
    terms = comment_terms("小明觉得包装破损，王小明", exclude=["王小明"])
    assert "小明" not in "".join(terms) and "包装" in terms


def test_shopping_words_jieba_splits_or_mistakes_for_names_are_kept_whole():
    # jieba 0.42's dictionary tags 过敏 and 太贵 as person names and splits 小程序
    assert comment_terms("用了过敏") == ["过敏"]
    assert comment_terms("价格太贵了") == ["价格", "太贵"]
    assert comment_terms("小程序下单很方便") == ["小程序", "下单", "方便"]
    # a lone hanzi counts only as an adjective
    assert comment_terms("发货有点慢") == ["发货", "慢"]
    assert comment_terms("物流给力") == ["物流", "给力"]
