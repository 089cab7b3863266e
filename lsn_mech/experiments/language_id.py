"""Offline language identification of generated text, with `lingua`.

Tang et al. score steering by whether the model answers in the expected language,
using the ``langdetect`` package. lsn_mech uses `lingua` (``lingua-language-detector``,
part of the ``demo`` extra) instead: it runs offline, is deterministic, and is much more
accurate on short texts. Codes are ISO 639-1 (``"en"``, ``"zh"`` …), as everywhere in
lsn_mech.

By default a detector only chooses among the languages in play (those of the prompts
and the steering targets): with all 75 lingua languages, short Indonesian sentences are
often taken for Malay, and Chinese-character text for Japanese or the reverse, which
would measure the identifier rather than the model. Pass ``languages="all"`` to allow
every language lingua knows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from lsn_mech.errors import LsnMechError, require


class UnsupportedLanguageError(LsnMechError, ValueError):
    """A language code that the language identifier does not know."""


def _lingua() -> Any:
    return require("lingua", "demo", "Language identification of generated text (lingua)")


def to_lingua(code: str) -> Any:
    """The ``lingua.Language`` of an ISO 639-1 code (``"fr"`` → ``Language.FRENCH``)."""
    lingua = _lingua()
    try:
        iso = lingua.IsoCode639_1.from_str(code)
        return lingua.Language.from_iso_code_639_1(iso)
    except (ValueError, AttributeError, TypeError):
        known = ", ".join(sorted(supported_languages()))
        raise UnsupportedLanguageError(
            f"The language identifier (lingua) does not know the language {code!r}; it knows "
            f"the ISO 639-1 codes {known}. Leave that language out of the generation "
            "evaluation, or map it to one of these codes."
        ) from None


def from_lingua(language: Any) -> str:
    """The ISO 639-1 code of a ``lingua.Language`` (``Language.FRENCH`` → ``"fr"``)."""
    return str(language.iso_code_639_1.name).lower()


def supported_languages() -> list[str]:
    """ISO 639-1 codes of every language lingua can identify."""
    lingua = _lingua()
    return sorted(from_lingua(lang) for lang in lingua.Language.all())


class LanguageIdentifier:
    """Identify the language of texts among a set of candidate languages.

    Args:
        languages: ISO 639-1 codes to choose among, or ``"all"`` for every language
            lingua knows. With one code, English (or French, when the one code is
            English) is added: a detector with a single candidate would always answer it.
        minimum_relative_distance: lingua's reliability margin in ``[0, 0.99]``: when
            the two most likely languages are closer than this, the answer is ``None``.
            0 (the default) always answers for texts that hold letters.
        low_accuracy: lingua's faster, less accurate mode (trigram models only).

    Texts with no letters (empty, whitespace, digits, punctuation) get ``None``.

    Example:
        >>> ident = LanguageIdentifier(["en", "fr", "zh"])
        >>> ident.detect("Au commencement, Dieu créa les cieux et la terre.")
        'fr'
    """

    def __init__(
        self,
        languages: Sequence[str] | str = "all",
        *,
        minimum_relative_distance: float = 0.0,
        low_accuracy: bool = False,
    ) -> None:
        lingua = _lingua()
        if isinstance(languages, str) and languages == "all":
            builder = lingua.LanguageDetectorBuilder.from_all_languages()
            self.languages: tuple[str, ...] = tuple(supported_languages())
        else:
            if isinstance(languages, str):
                languages = [languages]
            codes = list(dict.fromkeys(str(code) for code in languages))
            if not codes:
                raise UnsupportedLanguageError(
                    "LanguageIdentifier needs at least one language code, or 'all'."
                )
            if len(codes) == 1:
                codes.append("fr" if codes[0] == "en" else "en")
            builder = lingua.LanguageDetectorBuilder.from_languages(
                *(to_lingua(code) for code in codes)
            )
            self.languages = tuple(codes)
        if minimum_relative_distance:
            builder = builder.with_minimum_relative_distance(float(minimum_relative_distance))
        if low_accuracy:
            builder = builder.with_low_accuracy_mode()
        self.minimum_relative_distance = float(minimum_relative_distance)
        self.low_accuracy = bool(low_accuracy)
        self._detector = builder.build()

    def detect(self, text: str) -> str | None:
        """The ISO 639-1 code of the most likely language, or ``None`` (no letters, or
        not reliable enough)."""
        if not text or not any(ch.isalpha() for ch in text):
            return None
        found = self._detector.detect_language_of(text)
        return None if found is None else from_lingua(found)

    def detect_many(self, texts: Iterable[str]) -> list[str | None]:
        """`detect` for each text, in order."""
        return [self.detect(text) for text in texts]

    def confidence(self, text: str) -> dict[str, float]:
        """Probability of every candidate language (sums to 1; empty for texts with no
        letters), most likely first."""
        if not text or not any(ch.isalpha() for ch in text):
            return {}
        values = self._detector.compute_language_confidence_values(text)
        return {from_lingua(v.language): float(v.value) for v in values}

    def __repr__(self) -> str:
        shown = "all" if len(self.languages) > 20 else ", ".join(self.languages)
        return f"LanguageIdentifier({shown})"


@functools.lru_cache(maxsize=16)
def _cached(languages: tuple[str, ...] | str) -> LanguageIdentifier:
    return LanguageIdentifier(languages)


def identify_language(text: str, languages: Sequence[str] | str = "all") -> str | None:
    """The ISO 639-1 code of the language of ``text`` among ``languages`` (or ``None``).

    Detectors are cached per language set, so calling this in a loop is cheap.

    Example:
        >>> identify_language("起初,神创造天地。", ["zh", "ja", "en"])
        'zh'
    """
    key = languages if isinstance(languages, str) else tuple(languages)
    return _cached(key).detect(text)
