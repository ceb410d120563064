"""What readers type about what they read (newsletter.picks.interests): interests,
authors, arXiv categories, seed papers and the number of picks, read and cut
to the same limits from the web form, the command line and CSV imports; and
arXiv ids and links read as bare ids (newsletter.core.models.arxiv_id_of)."""

from __future__ import annotations

import pytest

from newsletter.picks.interests import (
    MAX_AUTHOR_CHARS,
    MAX_AUTHORS,
    MAX_CATEGORIES,
    MAX_INTERESTS,
    MAX_PHRASE_CHARS,
    MAX_SEEDS,
    category_of,
    parse_authors,
    parse_categories,
    parse_interests,
    parse_picks,
    parse_seeds,
)
from newsletter.core.models import MAX_PICKS, arxiv_id_of

# --------------------------------------------------------------------------
# interests and authors: cut, never refused


def test_interests_one_per_line_or_separated_by_semicolons():
    parsed = parse_interests("concept erasure\r\n\n  diffusion   models ;protein folding;\n\t\n")
    assert parsed == parse_interests("concept erasure; diffusion models; protein folding")
    assert parsed.values == ("concept erasure", "diffusion models", "protein folding")
    assert parsed.error is None and parsed.notes == ()


def test_repeated_interests_are_kept_once_in_their_first_spelling():
    assert parse_interests("Concept Erasure\nconcept erasure\nCONCEPT ERASURE\nvideo").values == (
        "Concept Erasure", "video")


def test_hundreds_of_interests_are_cut_to_the_limit_with_a_note():
    parsed = parse_interests("\n".join(f"topic {n}" for n in range(500)))
    assert parsed.values == tuple(f"topic {n}" for n in range(MAX_INTERESTS))
    assert parsed.notes == (f"Only the first {MAX_INTERESTS} interests are kept.",)


def test_a_ten_thousand_character_interest_is_cut_with_a_note():
    parsed = parse_interests("x" * 10_000 + "\nshort")
    assert parsed.values == ("x" * MAX_PHRASE_CHARS, "short")
    assert parsed.notes == (f"Interests longer than {MAX_PHRASE_CHARS} characters are cut short.",)


def test_control_and_bidirectional_characters_are_removed():
    parsed = parse_interests("\x1b[2Jcle\x00ar\u202eed\u2066 scre\x85en\u2028next")
    # What is left of an escape sequence is harmless text; NEL separates words.
    assert parsed.values == ("[2Jcleared scre en", "next")
    for value in parsed.values:
        assert value.isprintable()


def test_markup_and_template_syntax_are_kept_as_text():
    hostile = "<script>alert(1)</script>\n{{ 7*7 }}\n{% raw %}x\n$\\alpha$"
    assert parse_interests(hostile).values == ("<script>alert(1)</script>", "{{ 7*7 }}", "{% raw %}x", "$\\alpha$")


def test_authors_have_their_own_limits():
    parsed = parse_authors("\n".join(f"Author {n}" for n in range(80)) + "\n" + "A" * 300)
    assert len(parsed.values) == MAX_AUTHORS
    assert parsed.notes == (f"Authors longer than {MAX_AUTHOR_CHARS} characters are cut short.",
                            f"Only the first {MAX_AUTHORS} authors are kept.")
    assert parse_authors("Yann LeCun; Geoffrey Hinton").values == ("Yann LeCun", "Geoffrey Hinton")
    assert parse_authors("B" * 300).values == ("B" * MAX_AUTHOR_CHARS,)


def test_nothing_typed_is_nothing_kept():
    for parse in (parse_interests, parse_authors, parse_categories, parse_seeds):
        assert parse("  \n ; \n") == parse("")
        assert parse("").values == () and parse("").error is None


# --------------------------------------------------------------------------
# categories


@pytest.mark.parametrize("typed, category", [
    ("cs.CV", "cs.CV"), ("cs.cv", "cs.CV"), ("STAT.ml", "stat.ML"), ("q-bio.NC", "q-bio.NC"),
    ("q-fin.st", "q-fin.ST"), ("physics.comp-ph", "physics.comp-ph"), ("cond-mat.mes-hall", "cond-mat.mes-hall"),
    ("astro-ph.CO", "astro-ph.CO"), ("astro-ph", "astro-ph"), ("hep-th", "hep-th"), ("quant-ph", "quant-ph"),
    ("math.AG", "math.AG"), ("eess.IV", "eess.IV"), ("econ.EM", "econ.EM"), ("nlin.AO", "nlin.AO"),
])
def test_categories_are_written_as_arxiv_writes_them(typed, category):
    assert category_of(typed) == category


@pytest.mark.parametrize("typed", [
    "cs", "stat", "cv.CS", "hep-th.XX", "cs.C", "cs.CV.x", "cs..CV", ".CV", "cs.", "computer vision",
    "<b>cs.CV</b>", "cs.CV;DROP", "ＣＳ.CV", "c\u0301s.CV",
])
def test_what_is_not_a_category(typed):
    assert category_of(typed) is None


def test_categories_separated_by_commas_semicolons_or_spaces():
    parsed = parse_categories("cs.cv, cs.CL;stat.ML  q-bio.NC,,cs.CV")
    assert parsed.values == ("cs.CV", "cs.CL", "stat.ML", "q-bio.NC")


def test_a_wrong_category_is_an_error_naming_it_and_keeps_nothing():
    parsed = parse_categories("cs.CV, computer-vision, cs.LG")
    assert parsed.values == ()
    assert parsed.error == "“computer-vision” is not an arXiv category (such as cs.CV, stat.ML or q-bio.NC)."


def test_many_wrong_categories_are_named_a_few_and_counted():
    parsed = parse_categories("a1 b2 c3 d4 e5")
    assert parsed.error.startswith("“a1”, “b2”, “c3” (and 2 more) are not arXiv categories")


def test_a_long_wrong_entry_is_quoted_cut_short():
    parsed = parse_categories("<script>" + "x" * 10_000)
    assert len(parsed.error) < 200
    assert "“<script>xxx" in parsed.error and "…”" in parsed.error


def test_categories_beyond_the_limit_are_cut_with_a_note():
    typed = " ".join(f"math.{a}{b}" for a in "ABCDEF" for b in "ABCDEF")
    parsed = parse_categories(typed)
    assert len(parsed.values) == MAX_CATEGORIES
    assert parsed.notes == (f"Only the first {MAX_CATEGORIES} categories are kept.",)


# --------------------------------------------------------------------------
# seed papers


@pytest.mark.parametrize("typed, arxiv_id", [
    ("2403.01234", "2403.01234"),
    ("2403.01234v2", "2403.01234"),
    ("arXiv:2403.01234v12", "2403.01234"),
    ("1501.0001", "1501.0001"),
    ("https://arxiv.org/abs/2403.01234v2", "2403.01234"),
    ("http://arxiv.org/abs/2403.01234", "2403.01234"),
    ("https://www.arxiv.org/abs/2403.01234", "2403.01234"),
    ("https://export.arxiv.org/abs/2403.01234v1", "2403.01234"),
    ("arxiv.org/abs/2403.01234", "2403.01234"),
    ("https://arxiv.org/pdf/2403.01234", "2403.01234"),
    ("https://arxiv.org/pdf/2403.01234v3.pdf", "2403.01234"),
    ("https://arxiv.org/pdf/2403.01234v3/", "2403.01234"),
    ("https://arxiv.org/abs/2403.01234?context=cs.CV", "2403.01234"),
    ("https://arxiv.org/abs/2403.01234#section", "2403.01234"),
    ("https://arxiv.org/abs/hep-th/9901001v1", "hep-th/9901001"),
    ("hep-th/9901001", "hep-th/9901001"),
])
def test_seed_papers_are_bare_ids_without_version(typed, arxiv_id):
    assert arxiv_id_of(typed) == arxiv_id
    assert parse_seeds(typed).values == (arxiv_id,)


@pytest.mark.parametrize("typed", [
    "2403.123", "24031.01234", "https://example.org/abs/2403.01234", "https://arxiv.org/list/cs.CV/recent",
    "https://arxiv.org/abs/", "javascript:alert(1)", "2403.01234v", "<img src=x>", "title:some-paper",
])
def test_what_is_not_a_seed_paper(typed):
    assert arxiv_id_of(typed) is None
    parsed = parse_seeds(typed)
    assert parsed.values == () and "not an arXiv paper" in parsed.error.replace("arXiv papers", "an arXiv paper")


def test_seed_papers_one_per_line_repeats_dropped_and_cut_to_the_limit():
    typed = "\n".join([f"https://arxiv.org/abs/2403.{n:05d}v1" for n in range(30)] + ["2403.00000v9"])
    parsed = parse_seeds(typed)
    assert parsed.values == tuple(f"2403.{n:05d}" for n in range(MAX_SEEDS))
    assert parsed.notes == (f"Only the first {MAX_SEEDS} seed papers are kept.",)
    assert parse_seeds("2403.00001, 2403.00002 2403.00001v2").values == ("2403.00001", "2403.00002")


# --------------------------------------------------------------------------
# the number of picks


@pytest.mark.parametrize("typed, picks", [("0", 0), ("5", 5), (" 10 ", 10), ("007", 7)])
def test_the_number_of_picks(typed, picks):
    assert parse_picks(typed).values == (picks,)


@pytest.mark.parametrize("typed", ["", "11", "-1", "3.5", "five", "٣", "²", "9" * 5000, "1e1", "+3", "0x5"])
def test_what_is_not_a_number_of_picks(typed):
    parsed = parse_picks(typed)
    assert parsed.values == ()
    assert parsed.error == f"The number of picks is a whole number from 0 to {MAX_PICKS} (0: no picks)."
