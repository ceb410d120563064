"""A paper's TL;DR: the sentence of its abstract that says what the paper
does ("We propose…", "In this paper…", "Our method…"), picked offline by
rule, the same every time.

An abstract usually opens with motivation ("Large language models have
become…") and comes to its contribution a few sentences later; a teaser
made of its first sentences tells the reader why the field cares, not what
this paper brings. The rules below score each sentence by the words that
announce a contribution; the best scored wins, the earliest on a tie, and
an abstract with none falls back to its first sentence.
"""

from __future__ import annotations

import re

# A sentence ends at ., ! or ? (with any closing quote or bracket), then
# space, then what can start a sentence. "3.5" and "2503.01234" have no
# space after the dot; abbreviations are checked one by one (see _ends_here).
_BOUNDARY = re.compile(r"[.!?][\"'”’)\]]*\s+(?=[A-Z0-9\"'“‘(\[])")
# Words ending in a dot that do not end a sentence: "e.g. X", "et al. 2024",
# "vs. GPT-4", "Fig. 2". Single letters too: initials ("J. Smith").
_ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "al.", "vs.", "v.", "cf.", "fig.", "figs.", "eq.", "eqs.", "sec.", "secs.", "tab.",
    "no.", "nos.", "approx.", "resp.", "ref.", "refs.", "vol.", "pp.", "ch.", "dr.", "prof.", "mr.", "ms.",
    "st.", "incl.", "w.r.t.", "a.k.a.", "u.s.",
})

# What announces a contribution, strongest first: (score, pattern), matched
# on the lower-cased sentence. A sentence scores its first (best) match.
_PAPER = r"(?:paper|work|study|report|article|review|survey)"
_WE = rf"\b(?:we|here,? we|this (?:\w+ )?{_PAPER}|in this (?:\w+ )?{_PAPER},? we)"
_ADVERB = (r"(?:\s+(?:also|further|then|first|here|therefore|thus|hence|now|newly|additionally|instead|"
           r"systematically|carefully|comprehensively|empirically))?")
_MAKE = (r"(?:propose|introduce|present|develop|design|put forward|unveil|release|build|construct|create|"
         r"contribute|offer|formulate|devise|establish|curate|describe|report|outline|provide)")
_FIND = (r"(?:show|find|demonstrate|reveal|discover|observe|identify|prove|argue|study|investigate|explore|"
         r"examine|analy[sz]e|evaluate|address|tackle|leverage|train|collect|benchmark|extend|apply|"
         r"conduct|perform)")
_SIGNALS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (4, re.compile(rf"{_WE}{_ADVERB}\s+{_MAKE}(?:e?s|d)?\b")),
    (4, re.compile(rf"\b(?:this|the present|our) {_PAPER} (?:proposes|introduces|presents|develops|describes|"
                   r"reports|offers|contributes)\b")),
    (3, re.compile(rf"\b(?:in this {_PAPER}|here),? ")),
    (3, re.compile(rf"{_WE}{_ADVERB}\s+{_FIND}(?:e?s|d)?\b")),
    (2, re.compile(rf"\b(?:this|the present) {_PAPER}\b")),
    (2, re.compile(r"\bour (?:method|approach|framework|model|system|technique|algorithm|pipeline|benchmark|"
                   r"dataset|contributions?)\b")),
    (1, re.compile(r"\bwe\b")),
)
# What a paper leaves to others is not what it brings: "we propose future
# research directions".
_FUTURE = re.compile(r"\bfuture (?:work|research|directions?|studies)\b")


def _ends_here(text: str, dot: int) -> bool:
    """Whether the ``.`` at ``dot`` in ``text`` ends a sentence rather than
    an abbreviation or an initial."""
    if text[dot] != ".":
        return True
    word = text[: dot + 1].rsplit(None, 1)[-1].lstrip("([\"'“‘").lower()
    if word in _ABBREVIATIONS:
        return False
    return not (len(word) == 2 and word[0].isalpha())  # an initial: "J. Smith"


def sentences(text: str) -> list[str]:
    """Return the sentences of ``text`` (whitespace collapsed), split at
    ``.``, ``!`` and ``?`` but not inside decimals and identifiers ("3.5",
    "2503.01234") nor after abbreviations ("e.g.", "i.e.", "et al.", "vs.",
    "Fig. 2") or initials. Returns ``[]`` for blank text."""
    text = " ".join(text.split())
    found, start = [], 0
    for match in _BOUNDARY.finditer(text):
        if _ends_here(text, match.start()):
            end = match.end() - len(match.group()) + len(match.group().rstrip())
            found.append(text[start:end])
            start = match.end()
    if text[start:]:
        found.append(text[start:])
    return found


def contribution_score(sentence: str) -> int:
    """Return how clearly ``sentence`` states a paper's contribution: 4 for
    "we propose / introduce / present…" or "this paper proposes…", 3 for
    "in this paper" or "we show / find / study…", 2 for "this work" or
    "our method / approach…", 1 for any "we", 0 for none or for a sentence
    about future work."""
    lowered = sentence.lower()
    if _FUTURE.search(lowered):
        return 0
    return next((score for score, pattern in _SIGNALS if pattern.search(lowered)), 0)


def contribution_index(parts: list[str]) -> int | None:
    """Return the index in ``parts`` (an abstract's sentences) of the one
    that best states the contribution, the earliest among the best; None
    when none states one."""
    best, index = 0, None
    for i, sentence in enumerate(parts):
        score = contribution_score(sentence)
        if score > best:
            best, index = score, i
    return index


def shorten(text: str, limit: int) -> str:
    """Return ``text`` when it has at most ``limit`` characters, else cut at
    the last word boundary within ``limit`` (inside a word only when it has
    no space) with trailing punctuation dropped and an ellipsis added: at
    most ``limit + 1`` characters."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:.-–—") + "…"


# A contribution sentence's opening that points back at sentences the
# TL;DR leaves out ("To this end, we propose…"): dropped, so it reads alone.
_BACK_REFERENCE = re.compile(
    r"^(?:to this end|to (?:address|tackle|overcome|solve|fill) (?:this|these|the above)[\w\s-]{0,40}?"
    r"|in (?:particular|this context|response to (?:this|these)[\w\s-]{0,30}?)|therefore|thus|hence"
    r"|motivated by (?:this|these)[\w\s-]{0,30}?|inspired by (?:this|these)[\w\s-]{0,30}?"
    r"|building on (?:this|these)[\w\s-]{0,30}?|however|instead),\s+(?=[a-z])", re.IGNORECASE)


def stands_alone(sentence: str) -> str:
    """Return ``sentence`` without an opening that refers back to what came
    before it ("To this end, we propose X" becomes "We propose X")."""
    rest = _BACK_REFERENCE.sub("", sentence, count=1)
    return rest if rest == sentence else rest[:1].upper() + rest[1:]


def tldr(abstract: str, limit: int) -> str:
    """Return the TL;DR of ``abstract``: its contribution sentence (see
    :func:`contribution_index`, standing alone: :func:`stands_alone`), else
    its first sentence, shortened to ``limit`` characters by
    :func:`shorten`. Returns ``""`` for a blank abstract."""
    parts = sentences(abstract)
    if not parts:
        return ""
    index = contribution_index(parts)
    return shorten(parts[0] if index is None else stands_alone(parts[index]), limit)
