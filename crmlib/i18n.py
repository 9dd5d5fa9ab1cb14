"""Report text in the run's language: every sentence a page shows goes through :func:`_`.

Messages are written in English in the code, as ``_("{n} customers are at risk").format(n=...)`` — a
literal inside ``_()`` (never an f-string), so that Babel's extractor finds every message. Words that
are data codes until a page shows them (segment names, verdicts, step names) are marked where they are
defined with :func:`N_` and translated where they are shown with :func:`_` on the value.

The catalog is one gettext ``.po`` file per language, ``crmlib/locale/<ll_CC>/LC_MESSAGES/crmlib.po``;
it is read with Babel when a language is chosen (no compiled ``.mo`` to go stale). Notebook Markdown
cells are messages too: :func:`translate_markdown` swaps a cell's text for its translation when the
report is rendered, so the notebooks stay readable English for analysts.

Maintaining the catalog (``make messages``)::

    python -m crmlib.i18n extract   # code + notebooks -> crmlib/locale/crmlib.pot, merged into each .po
                                    # (partial .po files beside crmlib.po are folded in and removed)
    python -m crmlib.i18n check     # every message translated, placeholders kept; exit 1 otherwise
"""

from __future__ import annotations

import functools
import gettext
import io
import re
import string
import sys
from pathlib import Path

__all__ = ["_", "N_", "ngettext", "set_language", "language", "languages", "translate_markdown",
           "template_pattern", "translate_filled", "extract_messages", "catalog_problems", "LOCALE_DIR",
           "DOMAIN", "LANGUAGES"]

PACKAGE_DIR = Path(__file__).resolve().parent
LOCALE_DIR = PACKAGE_DIR / "locale"
NOTEBOOKS_DIR = PACKAGE_DIR.parent / "notebooks"
DOMAIN = "crmlib"
#: the report languages ``run.language`` accepts; each but English has a catalog under LOCALE_DIR
LANGUAGES = ("en", "zh-CN")

_state: dict = {"language": "en", "translations": gettext.NullTranslations()}
_cache: dict[str, gettext.NullTranslations] = {}


def _catalog_paths(code: str) -> list[Path]:
    folder = LOCALE_DIR / code.replace("-", "_") / "LC_MESSAGES"
    main = folder / f"{DOMAIN}.po"
    return ([main] if main.exists() else []) + sorted(p for p in folder.glob("*.po") if p != main)


def _load(code: str) -> gettext.NullTranslations:
    """The translations of ``code`` read from its ``.po`` file(s), compiled in memory."""
    from babel.messages.catalog import Catalog
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    paths = _catalog_paths(code)
    if not paths:
        return gettext.NullTranslations()
    merged = Catalog(locale=code.replace("-", "_"), domain=DOMAIN)
    for path in paths:
        with path.open("rb") as fh:
            for msg in read_po(fh, locale=code.replace("-", "_")):
                if msg.id and msg.string and not msg.fuzzy and merged.get(msg.id) is None:
                    merged[msg.id] = msg
    buf = io.BytesIO()
    write_mo(buf, merged)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def set_language(language: str | None) -> None:
    """Use ``language`` (``en`` or ``zh-CN``; None means ``en``) for the messages of this process."""
    language = language or "en"
    if language not in LANGUAGES:
        raise ValueError(f"unknown report language {language!r}: use one of {', '.join(LANGUAGES)}")
    if language not in _cache:
        _cache[language] = gettext.NullTranslations() if language == "en" else _load(language)
    _state["language"] = language
    _state["translations"] = _cache[language]


def language() -> str:
    """The language :func:`set_language` chose (default ``en``)."""
    return _state["language"]


def languages() -> tuple[str, ...]:
    """The report languages (``run.language`` values)."""
    return LANGUAGES


def _(message: str) -> str:
    """``message`` in the current language (the English text when the catalog lacks it)."""
    if not isinstance(message, str) or not message:
        return message
    return _state["translations"].gettext(message)


def N_(message: str) -> str:
    """Mark ``message`` for the catalog without translating it now (it is translated where shown)."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form of a message for ``n``, in the current language."""
    return _state["translations"].ngettext(singular, plural, n)


@functools.lru_cache(maxsize=256)
def template_pattern(template: str) -> re.Pattern:
    """A regular expression matching ``template`` formatted with any values, one named group per field."""
    parts, seen = [], set()
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?P={field})" if field in seen else f"(?P<{field}>.+?)")
            seen.add(field)
    return re.compile("".join(parts), re.DOTALL)


def translate_filled(text: str, templates: tuple[str, ...], nested: dict[str, frozenset] | None = None) -> str:
    """``text`` - stored in English in a run table, possibly a message of ``templates`` formatted with
    values - in the current language.

    Tables keep English (other code and later runs read them); a page shows their text through this.
    ``text`` is looked up as a message; else the first template it matches is translated and formatted
    with the same values. The fields named in ``nested[template]`` hold stored messages themselves and are
    translated the same way; other values (numbers, channel names) are kept. Unknown text is returned as it is.
    """
    if not isinstance(text, str) or not text or language() == "en":
        return text
    translated = _(text)
    if translated != text:
        return translated
    for template in templates:
        match = template_pattern(template).fullmatch(text) if "{" in template else None
        if match:
            inner = (nested or {}).get(template, frozenset())
            values = {k: translate_filled(v, templates, nested) if k in inner else v
                      for k, v in match.groupdict().items()}
            return _(template).format(**values)
    return text


def translate_markdown(source: str) -> str:
    """A notebook Markdown cell's text in the current language (the cell's whole text is the message)."""
    return _(source.strip()) if source.strip() else source


# -- catalog maintenance -------------------------------------------------------------------------------
_KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}


def extract_messages(package_dir: Path = PACKAGE_DIR, notebooks_dir: Path = NOTEBOOKS_DIR):
    """Every message of the package's code and the notebooks' Markdown cells, as a Babel ``Catalog``."""
    import json

    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    catalog = Catalog(domain=DOMAIN, project="crmlib", charset="utf-8")
    method_map = [("**.py", "python")]
    for filename, lineno, message, comments, context in extract_from_dir(
            str(package_dir), method_map, keywords=_KEYWORDS, comment_tags=("i18n:",)):
        if filename.startswith(("locale", "templates")):
            continue
        catalog.add(message, locations=[(f"crmlib/{filename}", lineno)], auto_comments=comments,
                    context=context)
    for nb_path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for number, cell in enumerate(nb.get("cells", []), start=1):
            if cell.get("cell_type") == "markdown":
                text = "".join(cell.get("source", "")).strip()
                if text:
                    catalog.add(text, locations=[(f"notebooks/{nb_path.name}", number)])
    return catalog


def _placeholders(text: str) -> list[str]:
    names = []
    try:
        for _literal, field, _spec, _conv in string.Formatter().parse(text):
            if field is not None:
                names.append(field)
    except ValueError:  # a stray brace: compare the raw brace groups instead
        names = re.findall(r"\{[^{}]*\}", text)
    return sorted(names)


def catalog_problems(language: str, catalog=None) -> list[str]:
    """What the ``language`` catalog lacks: untranslated messages and translations that lose a placeholder.

    Empty when every message of the code and the notebooks has a translation with the same ``{names}``.
    """
    from babel.messages.pofile import read_po

    catalog = catalog if catalog is not None else extract_messages()
    translated: dict = {}
    for path in _catalog_paths(language):
        with path.open("rb") as fh:
            for msg in read_po(fh):
                if msg.id and msg.string and not msg.fuzzy:
                    translated.setdefault(msg.id, msg.string)
    problems = []
    for msg in catalog:
        if not msg.id:
            continue
        where = ", ".join(f"{f}:{n}" for f, n in msg.locations[:2])
        ids = msg.id if isinstance(msg.id, tuple) else (msg.id,)
        got = translated.get(msg.id)
        if not got:
            problems.append(f"{language}: no translation for {ids[0]!r} ({where})")
            continue
        strings = got if isinstance(got, tuple) else (got,)
        for source, target in zip(ids, strings):
            if _placeholders(source) != _placeholders(target):
                problems.append(f"{language}: placeholders differ in {source!r} -> {target!r} ({where})")
    return problems


def _update_catalogs() -> None:
    from babel.messages.pofile import read_po, write_po

    template = extract_messages()
    LOCALE_DIR.mkdir(exist_ok=True)
    with (LOCALE_DIR / f"{DOMAIN}.pot").open("wb") as fh:
        write_po(fh, template, width=100, sort_output=False, omit_header=True)
    for lang in LANGUAGES[1:]:
        path = LOCALE_DIR / lang.replace("-", "_") / "LC_MESSAGES" / f"{DOMAIN}.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as fh:
                catalog = read_po(fh, locale=lang.replace("-", "_"))
        else:
            from babel.messages.catalog import Catalog
            catalog = Catalog(locale=lang.replace("-", "_"), domain=DOMAIN)
        catalog.update(template, no_fuzzy_matching=True)
        parts = [p for p in _catalog_paths(lang) if p != path]
        for part in parts:  # partial catalogs dropped beside crmlib.po (one per contributor) fold into it
            with part.open("rb") as fh:
                for msg in read_po(fh, locale=lang.replace("-", "_")):
                    target = catalog.get(msg.id) if msg.id else None
                    if target is not None and msg.string and not target.string:
                        target.string = msg.string
                        target.flags.discard("fuzzy")
        with path.open("wb") as fh:
            write_po(fh, catalog, width=100, omit_header=True, ignore_obsolete=True,
                     include_previous=False)
        for part in parts:
            part.unlink()
        print(f"{path}: {sum(1 for m in catalog if m.id)} messages, "
              f"{sum(1 for m in catalog if m.id and not m.string)} untranslated")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "check"
    if command == "extract":
        _update_catalogs()
        return 0
    if command == "check":
        problems = [p for lang in LANGUAGES[1:] for p in catalog_problems(lang)]
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s)")
        return 1 if problems else 0
    print("usage: python -m crmlib.i18n [extract|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
