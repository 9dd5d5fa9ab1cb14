"""The countable words of a customer comment, with nothing in them that identifies a person.

:func:`comment_terms` turns one free-text comment (Chinese, English or both mixed) into the terms a
feedback analysis counts: ``"物流太慢了，客服不回复"`` gives ``["物流", "太慢", "客服", "回复"]``.
The terms are meant to be stored in run tables, so everything that could identify someone is dropped
before and after segmentation:

- e-mail addresses, web addresses, @handles, account names (``wxid_zhangsan``, letters mixed with
  digits) and phone-like digit runs are cut out of the text first;
- every term holding a digit is dropped (order numbers, card numbers, the rest of a phone number);
- Chinese person names: the words jieba's part-of-speech tagger marks as names (tags ``nr``, ``nrfg``,
  ``nrt``), a surname before such a name or before a form of address (``张先生``, ``欧阳娜娜``) and
  ``小王`` / ``老李`` forms;
- English person names: runs of two or more capitalised words (``John Smith``), a word after a title
  (``Mr``, ``Dr``...) and any capitalised word inside a sentence (``thanks to Mary``). A single
  capitalised word that opens a sentence is kept, lower-cased, since it is usually an ordinary word
  (``Delivery was slow``); a lone first name opening a sentence is the one case these rules miss,
  which is why callers that know the respondent's name pass it in ``exclude``;
- stop words (particles, pronouns, conjunctions, the commonest adverbs, English function words) and
  punctuation, so that what is left is what the comment is about.

Chinese is segmented with jieba (0.42, MIT licence), whose dictionary is loaded once per process and
quietly: jieba's own log lines would otherwise land on the run's stderr. Its dictionary cache goes to
a private folder (``$XDG_CACHE_HOME/crmlib`` or ``~/.cache/crmlib``), not to the shared system temp
folder where another user could replace it.

Terms are returned in the order they occur, repeats included, English lower-cased; count a term once
per comment to get the share of comments that mention it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import unicodedata
import warnings
from collections.abc import Iterable
from pathlib import Path

__all__ = ["comment_terms", "STOP_WORDS"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"@[\w.-]+", re.UNICODE)
# seven or more digits with the separators people type inside phone and card numbers
_DIGIT_RUN = re.compile(r"\+?\d[\d\s\-().]{5,}\d[xX]?")
# account names people paste (wxid_zhangsan, zhang.san_88, vip2024abc): an underscore, or letters and digits mixed
_ACCOUNT_ID = re.compile(r"(?<![A-Za-z0-9])(?:[A-Za-z0-9.\-]*_[A-Za-z0-9_.\-]*"
                         r"|(?=[A-Za-z.\-]*\d)(?=[0-9.\-]*[A-Za-z])[A-Za-z0-9.\-]{3,})(?![A-Za-z0-9])")
_ASCII_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*$")
_SENTENCE_END = set(".!?。！？;；\n…")

#: jieba part-of-speech tags of words that carry no topic: punctuation (x, w), numerals (m) and
#: measure words (q), particles (u*), prepositions (p), conjunctions (c), pronouns (r*),
#: interjections (e), modal particles (y) and onomatopoeia (o)
_DROPPED_TAGS = frozenset({"x", "w", "m", "mq", "q", "p", "c", "e", "y", "o"})
_DROPPED_TAG_FAMILIES = ("u", "r")
_NAME_TAGS = ("nr",)

_STOP_ZH = set(
    "的 了 着 过 吗 呢 吧 啊 呀 哦 嗯 哈 么 之 得 地 也 都 就 还 又 再 才 很 太 挺 蛮 真 超 最 更 好像 "
    "非常 特别 比较 有点 有些 一些 一点 一下 一直 经常 总是 已经 还是 就是 都是 不是 没有 没 不 别 "
    "是 在 有 和 与 及 或 但 但是 而且 因为 所以 如果 虽然 然后 而 并 把 被 让 给 对 向 从 到 "
    "我 我们 你 你们 他 她 它 他们 她们 大家 自己 这 那 这个 那个 这些 那些 这次 那次 这里 那里 "
    "什么 怎么 为什么 哪 哪里 多少 一个 一次 个 次 些 每 各 其他 等 等等 "
    "请 说 觉得 感觉 认为 希望 可以 可能 应该 能 会 要 想 需要 "
    "先生 女士 小姐 经理 老师 师傅 同学 阿姨 大姐 大哥 店长 主管 老板 亲 朋友 老 小 大".split()
)
_STOP_EN = set(
    "a an the and or but if then so because as of at by for with about against between into through "
    "during before after above below to from up down in out on off over under again further once here "
    "there when where why how all any both each few more most other some such no nor not only own "
    "same than too very can will just don should now is are was were be been being have has had "
    "having do does did doing would could might must shall may i me my myself we our ours ourselves "
    "you your yours yourself yourselves he him his himself she her hers herself it its itself they "
    "them their theirs themselves what which who whom this that these those am im ive id dont didnt "
    "doesnt isnt wasnt arent werent cant couldnt wont wouldnt shouldnt s t d ll m re ve also really "
    "still even get got one two thanks thank please ok okay mr mrs ms miss dr sir madam".split()
)
#: words dropped from every comment: function words of Chinese and English, forms of address
STOP_WORDS = frozenset(_STOP_ZH | _STOP_EN)

_TITLES_EN = {"mr", "mrs", "ms", "miss", "dr", "sir", "madam", "prof"}
_ADDRESS_ZH = ("先生", "女士", "小姐", "经理", "老师", "师傅", "同学", "阿姨", "大姐", "大哥",
               "店长", "主管", "老板", "总")
# the commonest Chinese surnames (about 85 % of the population) and the compound ones still in use;
# only used next to a name or a form of address, so an ordinary word like 高 or 金 is left alone
_SURNAMES = set(
    "王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 彭 曾 "
    "肖 田 董 袁 潘 于 蒋 蔡 余 杜 叶 程 苏 魏 吕 丁 任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金 石 廖 贾 夏 "
    "韦 付 方 白 邹 孟 熊 秦 邱 江 尹 薛 闫 段 雷 侯 龙 史 陶 黎 贺 顾 毛 郝 龚 邵 万 钱 严 覃 武 戴 "
    "莫 孔 向 汤 欧阳 司马 上官 诸葛 东方 皇甫 慕容 令狐 司徒 尉迟 长孙 夏侯 公孙 宇文 端木 南宫".split()
)
# less common surnames (together with the above, about 97 % of the population): a word jieba tags as a
# name counts as one when it starts with any of them, since its dictionary also tags 过敏 and 太贵 as names
_NAME_START = _SURNAMES | set(
    "常 温 康 施 文 牛 樊 葛 邢 安 齐 易 乔 伍 庞 颜 倪 庄 聂 章 鲁 岳 翟 殷 詹 申 欧 耿 关 兰 焦 俞 左 柳 甘 "
    "祝 包 宁 尚 符 舒 阮 柯 纪 梅 童 凌 毕 单 季 裴 霍 涂 成 苗 谷 盛 曲 翁 冉 骆 蓝 路 游 辛 靳 管 柴 蒙 鲍 "
    "华 喻 祁 蒲 房 滕 屈 饶 解 牟 艾 尤 阳 时 穆 农 司 卓 古 吉 缪 简 车 项 连 芦 麦 褚 娄 窦 戚 岑 景 党 宫 "
    "费 卜 冷 晏 席 卫 米 柏 宗 瞿 桂 全 佟 应 臧 闵 苟 邬 边 卞 姬 师 和 仇 栾 隋 商 刁 沙 荣 巫 寇 桑 郎 甄 "
    "丛 仲 虞 敖 巩 明 佘 池 查 麻 苑 迟 邝 官 封 谈 匡 鞠 惠 荆 乐 冀 郁 胥 南 班 储 原 栗 燕 楚 鄢 劳 谌 奚 "
    "皮 粟 冼 蔺 楼 盘 满 闻 位 厉 伊 仝 区 郜 海 阚 花 权 强 帅 屠 豆 朴 盖 练 廉 禹 井 祖 漆 巴 丰 支 卿 国 "
    "狄 平 计 索 宣 晋 相 初 门 云 容 敬 来 扈 晁 芮 都 普 阙 浦 戈 伏 鹿 薄 邸 雍 辜 羊 乌 母 裘 亓 修 邰 赫 "
    "杭 况 那 宿 鲜 印 逯 隆 茹 诸 战 慕 危 玉 银 亢 嵇 公 哈 湛 宾 戎 勾 茅 利 於 呼 居 揭 干 但 尉 冶 斯 元 "
    "束 檀 衣 信 展 阴 昝 智 幸 奉 植 衡 富 尧 闭 由 小 老 阿".split()
)
# shopping words jieba 0.42 splits or mis-tags (小程序 as 小 + 程序, 过敏 as a name), with their part of speech
_DOMAIN_WORDS = {
    "小程序": "n", "闪退": "v", "卡顿": "v", "售后": "n", "到货": "v", "发货": "v", "包邮": "v", "退货": "v",
    "退款": "v", "换货": "v", "好评": "n", "差评": "n", "优惠券": "n", "满减": "n", "性价比": "n", "给力": "a",
    "太贵": "a", "偏贵": "a", "过敏": "v", "配送员": "n", "快递员": "n", "客服": "n", "回购": "v", "起球": "v",
    "掉色": "v", "色差": "n", "漏发": "v", "错发": "v", "缺货": "v", "破损": "v", "会员": "n", "积分": "n",
}

_jieba_lock = threading.Lock()


def _cache_dir() -> str:
    """A folder only this user can write for jieba's dictionary cache (a private temp one if need be)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "crmlib"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(folder, os.W_OK):
            return str(folder)
    except OSError:
        pass
    private = tempfile.mkdtemp(prefix="crm-jieba-")
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    return private


@functools.cache
def _posseg():
    """jieba's part-of-speech segmenter with its dictionary loaded, once per process, silently.

    jieba 0.42 imports ``pkg_resources`` (a deprecation warning under recent setuptools), its source
    has escape sequences Python 3.12 warns about, and it logs its dictionary loading on stderr: all
    three would reach the run's stderr, which must carry only what the operator needs to read.
    """
    with _jieba_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import jieba
        import jieba.posseg

        # a failed cache write is harmless (the next process rebuilds it) and not the operator's concern
        jieba.setLogLevel(logging.CRITICAL + 1)
        jieba.dt.tmp_dir = _cache_dir()
        jieba.dt.cache_file = "jieba.cache"
        jieba.initialize()
        for word, tag in _DOMAIN_WORDS.items():
            jieba.add_word(word, tag=tag)
        return jieba.posseg.dt


def _topicless(flag: str) -> bool:
    return flag in _DROPPED_TAGS or flag.startswith(_DROPPED_TAG_FAMILIES)


def _is_cjk(term: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in term)


def _is_punctuation(term: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PSZC" for ch in term)


def _is_title_case(term: str) -> bool:
    return len(term) > 1 and term[0].isupper() and any(ch.islower() for ch in term[1:])


def _name_forms(names: Iterable[str]) -> set[str]:
    """Each name, its space-separated parts and, for a Chinese name, the given name without the surname."""
    forms = set()
    for name in names:
        name = unicodedata.normalize("NFKC", name or "").strip()
        if not name:
            continue
        forms.add(name)
        forms.update(part for part in name.split() if len(part) > 1)
        if _is_cjk(name) and len(name) >= 3:
            surname_length = 2 if name[:2] in _SURNAMES else 1
            if len(name) - surname_length >= 2:
                forms.add(name[surname_length:])  # people sign with 小明 as often as with 王小明
    return forms


def _scrub(text: str, exclude: Iterable[str]) -> str:
    """``text`` without the addresses, handles, digit runs and given names that would identify someone."""
    text = unicodedata.normalize("NFKC", text)  # full-width digits and @ become the ASCII ones
    for name in sorted(_name_forms(exclude), key=len, reverse=True):
        # word boundaries keep "Al" from cutting "also"; CJK has no spaces, so the whole form is cut
        pattern = re.escape(name) if _is_cjk(name) else rf"\b{re.escape(name)}\b"
        text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    for pattern in (_EMAIL, _URL, _HANDLE, _ACCOUNT_ID, _DIGIT_RUN):
        text = pattern.sub(" ", text)
    return text


@functools.lru_cache(maxsize=65536)
def _terms(text: str, exclude: tuple[str, ...]) -> tuple[str, ...]:
    tokens = [(pair.word, pair.flag) for pair in _posseg().cut(_scrub(text, exclude))]
    words: list[tuple[str, str, bool]] = []  # (word, tag, opens a sentence)
    sentence_start = True
    for word, flag in tokens:
        if not word.strip():
            continue
        if any(ch in _SENTENCE_END for ch in word):
            sentence_start = True
        if _is_punctuation(word):
            continue
        words.append((word, flag, sentence_start))
        sentence_start = False

    drop = [False] * len(words)
    for i, (word, flag, opens) in enumerate(words):
        prev_word = words[i - 1][0] if i > 0 else ""
        next_word = words[i + 1][0] if i + 1 < len(words) else ""
        next_flag = words[i + 1][1] if i + 1 < len(words) else ""
        if flag.startswith(_NAME_TAGS) and (flag != "nr" or not _is_cjk(word) or word[:1] in _NAME_START
                                            or word[:2] in _NAME_START or next_word.startswith(_ADDRESS_ZH)):
            drop[i] = True  # 张伟, 王小明, 娜娜 (nrt), 小明; not 过敏 or 太贵, which jieba's dictionary tags nr
        elif _is_cjk(word):
            if word in _SURNAMES and (next_flag.startswith(_NAME_TAGS) or next_word.startswith(_ADDRESS_ZH)):
                drop[i] = True  # 张 of 张先生, 欧阳 of 欧阳娜娜
            elif len(word) <= 3 and word[:1] in _SURNAMES and next_word.startswith(_ADDRESS_ZH):
                drop[i] = True  # 王伟 of 王伟先生 when jieba did not tag it as a name
            elif len(word) in (2, 3) and word[0] in "小老" and word[1:] in _SURNAMES:
                drop[i] = True  # 小王, 老李
        elif _ASCII_WORD.match(word) and _is_title_case(word):
            capitalised_neighbour = _is_title_case(prev_word) or _is_title_case(next_word)
            after_title = prev_word.lower().rstrip(".") in _TITLES_EN
            if capitalised_neighbour or after_title or not opens:
                drop[i] = True

    terms = []
    for (word, flag, _opens), dropped in zip(words, drop):
        if dropped or any(ch.isdigit() for ch in word) or _topicless(flag):
            continue
        term = word.lower() if not _is_cjk(word) else word
        term = term.strip("'-")
        if len(term) < 2 and not (_is_cjk(term) and flag == "a"):
            continue  # a single hanzi says something only as an adjective (慢, 贵, 差), not as 力 or 员
        if term in STOP_WORDS or term.replace("'", "") in STOP_WORDS or _is_punctuation(term):
            continue
        terms.append(term)
    return tuple(terms)


def comment_terms(text: str, *, exclude: Iterable[str] = ()) -> list[str]:
    """The words of a customer comment worth counting, without any personal data.

    Parameters
    ----------
    text : str
        One free-text comment, Chinese, English or mixed. None, NaN or an empty text gives ``[]``.
    exclude : iterable of str, optional
        Names known to belong to people (typically the respondent's own name from the contacts):
        removed from the text before segmentation, whatever the rules below would have kept.

    Returns
    -------
    list of str
        The terms in the order they occur, repeats included; English lower-cased. No term holds a
        digit, an e-mail or web address, a handle, a person's name (as far as the rules in the module
        docstring detect one), punctuation or a stop word.

    Examples
    --------
    >>> comment_terms("物流太慢了，客服不回复")
    ['物流', '太慢', '客服', '回复']
    >>> comment_terms("Delivery was slow, John Smith never called back: 0171 555 0199")
    ['delivery', 'slow', 'never', 'called', 'back']
    """
    if not isinstance(text, str) or not text.strip():
        return []
    return list(_terms(text, tuple(sorted(set(exclude)))))
