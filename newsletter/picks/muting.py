"""Negative keywords: which papers a reader's muted phrases hide.

A paper is muted for a reader when one of their muted phrases
(``Profile.muted``) appears in its title or abstract, word for word:

- case and accents are ignored ("Éclair" is "eclair"), and so is anything
  between words that is not a letter or a digit ("large-language models"
  says "large language models");
- the phrase matches whole words only ("GAN" does not mute a paper about
  an "organ", "art" not one about "artificial" intelligence);
- a plural of a phrase's word counts as the word and the other way round
  ("diffusion model" mutes "diffusion models", "LLMs" mutes "LLM",
  "policy" mutes "policies"), with English's simple plurals only.

Deterministic and explainable (a reader can find the words in the paper),
never a similarity: a muted phrase never hides a paper that does not say it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

from newsletter.core.models import Paper, Profile


def plain_words(text: str) -> list[str]:
    """The words of ``text``: accents removed, case folded, split at
    anything that is not a letter or a digit."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return re.findall(r"[^\W_]+", plain)


def _singular(word: str) -> str:
    """``word`` without a simple English plural ending (words of three
    letters or fewer, and those in -ss, -us, -is, are left as they are)."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")) or (word.endswith("ses") and len(word) > 5):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _word_pattern(word: str) -> str:
    """A regex matching ``word`` and its simple plural or singular."""
    forms = {word, _singular(word)}
    stems = sorted(forms, key=len, reverse=True)
    alternatives = [re.escape(stem) + "(?:e?s)?" for stem in stems]
    alternatives += [re.escape(stem[:-1]) + "ies" for stem in stems if stem.endswith("y") and len(stem) > 2]
    return "(?:" + "|".join(alternatives) + ")"


def phrase_pattern(phrase: str) -> re.Pattern | None:
    """The regex that finds ``phrase`` in a text's :func:`plain_words`
    joined by single spaces, or None for a phrase without a letter or a
    digit (it mutes nothing)."""
    words = plain_words(phrase)
    if not words:
        return None
    return re.compile(r"(?<![^\W_])" + " ".join(map(_word_pattern, words)) + r"(?![^\W_])")


def muted_text(paper: Paper) -> str:
    """What a muted phrase is looked for in: the paper's title and abstract,
    as plain words joined by single spaces."""
    return " ".join(plain_words(f"{paper.title} {paper.abstract}"))


def says(phrase: str, paper: Paper) -> bool:
    """Whether ``paper``'s title or abstract says ``phrase`` (see the module)."""
    pattern = phrase_pattern(phrase)
    return pattern is not None and pattern.search(muted_text(paper)) is not None


class MutedPapers:
    """The papers of one edition, ready to be matched against many readers'
    muted phrases: each phrase is looked for once per edition, and the
    papers that say it are kept for every reader who muted it."""

    def __init__(self, papers: Sequence[Paper]):
        self._texts = [muted_text(p) for p in papers]
        self._found: dict[str, frozenset[int]] = {}

    def saying(self, phrase: str) -> frozenset[int]:
        """Return the positions of the papers that say ``phrase``."""
        found = self._found.get(phrase)
        if found is None:
            pattern = phrase_pattern(phrase)
            found = frozenset() if pattern is None else frozenset(
                i for i, text in enumerate(self._texts) if pattern.search(text))
            self._found[phrase] = found
        return found

    def of(self, profile: Profile) -> frozenset[int]:
        """Return the positions of the papers ``profile``'s muted phrases hide."""
        return frozenset().union(*map(self.saying, profile.muted)) if profile.muted else frozenset()

    def of_many(self, profiles: Iterable[Profile]) -> dict[int, frozenset[int]]:
        """Return ``{subscriber id: positions}`` for the ``profiles`` with a
        muted paper in the edition (others are left out)."""
        found = {p.subscriber_id: self.of(p) for p in profiles if p.muted}
        return {i: positions for i, positions in found.items() if positions}
