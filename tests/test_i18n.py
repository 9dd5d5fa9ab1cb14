"""The report text catalog: every message has English and Chinese, and a zh-CN run reads in Chinese."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from crmlib import i18n
from crmlib.params import ParamsError, load_params

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def restore_language():
    yield
    i18n.set_language("en")


def _translated_messages(language: str) -> dict[str, str]:
    from babel.messages.pofile import read_po

    found: dict[str, str] = {}
    for path in i18n._catalog_paths(language):
        with path.open("rb") as fh:
            for msg in read_po(fh):
                if msg.id and msg.string and not msg.fuzzy and isinstance(msg.id, str):
                    found.setdefault(msg.id, msg.string)
    return found


def test_every_message_of_the_code_and_notebooks_has_a_chinese_translation():
    catalog = i18n.extract_messages()
    assert len([m for m in catalog if m.id]) > 500  # the extractor found the code's and the notebooks' text
    problems = i18n.catalog_problems("zh-CN", catalog)
    assert not problems, f"{len(problems)} problem(s); run `python -m crmlib.i18n extract` and translate:\n" + \
        "\n".join(problems[:40])


def test_the_extractor_finds_literal_messages_and_notebook_markdown():
    ids = {m.id for m in i18n.extract_messages() if m.id}
    notebook = json.loads((ROOT / "notebooks" / "02_segmentation.ipynb").read_text(encoding="utf-8"))
    markdown = ["".join(c["source"]).strip() for c in notebook["cells"] if c["cell_type"] == "markdown"]
    assert markdown and all(text in ids for text in markdown if text)
    assert "Run overview" in ids  # report.stage_nav's _("Run overview")


def test_placeholder_check_catches_a_lost_or_renamed_placeholder(tmp_path, monkeypatch):
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = Catalog()
    template.add("{n} customers are at risk")
    template.add("Key findings")
    po = Catalog(locale="zh_CN")
    po.add("{n} customers are at risk", "{count} 位客户有流失风险")
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / "crmlib.po").open("wb") as fh:
        write_po(fh, po)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    problems = i18n.catalog_problems("zh-CN", template)
    assert len(problems) == 2
    assert any("placeholders differ" in p for p in problems)
    assert any("no translation for 'Key findings'" in p for p in problems)


def test_messages_are_shown_in_the_chosen_language(restore_language):
    translated = _translated_messages("zh-CN")
    sample = [m for m in translated if "{" not in m][:25]
    assert len(sample) == 25
    i18n.set_language("zh-CN")
    assert [i18n._(m) for m in sample] == [translated[m] for m in sample]
    assert i18n.language() == "zh-CN"
    i18n.set_language("en")
    assert [i18n._(m) for m in sample] == sample
    assert i18n._("a message nobody wrote") == "a message nobody wrote"


def test_markdown_cells_are_translated_whole(restore_language):
    translated = _translated_messages("zh-CN")
    heading = next(m for m in translated if m.startswith("## "))
    i18n.set_language("zh-CN")
    assert i18n.translate_markdown("\n" + heading + "\n") == translated[heading]
    assert i18n.translate_markdown("## a heading nobody wrote") == "## a heading nobody wrote"


def test_label_kind_translates_our_codes_and_keeps_the_users_names(restore_language):
    from crmlib.present import fmt_label

    translated = _translated_messages("zh-CN")
    i18n.set_language("zh-CN")
    assert fmt_label("Champions") == translated["Champions"] != "Champions"
    assert fmt_label("小程序") == "小程序"
    assert fmt_label(None) == ""


def test_unknown_language_is_refused_by_the_params_and_by_set_language(tmp_path):
    params = yaml.safe_load((ROOT / "params" / "ci.yaml").read_text(encoding="utf-8"))
    params["run"]["language"] = "fr"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ParamsError, match="run.language"):
        load_params(path)
    with pytest.raises(ValueError, match="zh-CN"):
        i18n.set_language("fr")


def test_sample_zh_is_the_sample_in_chinese():
    english = yaml.safe_load((ROOT / "params" / "sample.yaml").read_text(encoding="utf-8"))
    chinese = yaml.safe_load((ROOT / "params" / "sample_zh.yaml").read_text(encoding="utf-8"))
    assert chinese["run"].pop("language") == "zh-CN"
    assert english["run"].get("language", "en") == "en"
    english["run"].pop("language", None)
    assert chinese["run"].pop("name") != english["run"].pop("name")
    assert chinese == english
