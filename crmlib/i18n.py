"""Report text in the run's language: every sentence a page shows goes through :func:`_`.

Messages are written in English in the code, as ``_("{n} customers are at risk").format(n=...)`` — a
literal inside ``_()`` (never an f-string), so that Babel's extractor (``pybabel extract``) finds every
message and the catalog under ``crmlib/locale/<language>/LC_MESSAGES/crmlib.po`` can translate it.
:func:`set_language` picks the catalog (``run.language``); without a compiled catalog for a language
the English text is shown, never an empty string.
"""

from __future__ import annotations

import gettext
from pathlib import Path

__all__ = ["_", "ngettext", "set_language", "language", "LOCALE_DIR", "DOMAIN"]

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "crmlib"

_state: dict = {"language": "en", "translations": gettext.NullTranslations()}


def set_language(language: str) -> None:
    """Use ``language`` (``en``, ``zh-CN``, ...) for the messages of this process."""
    code = language.replace("-", "_")
    _state["language"] = language
    _state["translations"] = gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[code],
                                                 fallback=True)


def language() -> str:
    """The language :func:`set_language` chose (default ``en``)."""
    return _state["language"]


def _(message: str) -> str:
    """``message`` in the current language."""
    return _state["translations"].gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form of a message for ``n``, in the current language."""
    return _state["translations"].ngettext(singular, plural, n)
