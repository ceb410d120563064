"""The operator's commands for personal picks, through click's CliRunner on
both databases (SQLite, then PostgreSQL): ``subscribers interests`` (show,
replace parts, refuse malformed input naming the option), the CSV import's
``interests`` and ``authors`` columns, and ``picks`` (one reader or all of
them, as text or JSON)."""

from __future__ import annotations

import json

import pytest

from conftest import FIXTURES, ok, one_line_error
from newsletter.papers.batches import load_batch
from newsletter.cli import picks as picks_command
from newsletter.core.models import Muting, Profile, RestOfDay
from newsletter.picks.picking import EditionPicks
from newsletter.store import FetchPaperPayload

BATCH = FIXTURES / "picks-day.json"




# --------------------------------------------------------------------------
# subscribers interests


def test_interests_shows_the_profile_and_replaces_only_the_parts_given(store, cli_run):
    reader, _ = store.add("ada@example.com")
    store.store_batch(load_batch(BATCH))
    store.record_vote(reader.id, "2503.00006", -1, "2025-03-11")
    out = ok(cli_run("subscribers", "interests", "ada@example.com"))
    assert out.splitlines() == ["ada@example.com", "  interests:   (none)", "  authors:     (none)",
                                "  categories:  (none)", "  seed papers: (none)", "  picks:       5",
                                "  rest:        titles (every title)", "  muted:       (none)",
                                "  votes:       0 up, 1 down", "  frequency:   daily"]
    out = ok(cli_run("subscribers", "interests", "ADA@example.com", "--keywords", "concept erasure; video generation",
                 "--authors", "Grace Hopper;Alan Turing", "--categories", "cs.cv,cs.LG",
                 "--seed-papers", "2503.00002,https://arxiv.org/abs/2311.12092v2", "--picks", "3"))
    assert "  interests:   concept erasure; video generation" in out
    assert "  seed papers: 2503.00002 (Protein Structure Prediction with Language Models), " \
           "2311.12092 (not in the database yet)" in out
    profile = store.profile(reader.id)
    assert profile == Profile(reader.id, ("concept erasure", "video generation"), ("Grace Hopper", "Alan Turing"),
                              ("cs.CV", "cs.LG"), ("2503.00002", "2311.12092"), disliked=("2503.00006",), picks=3)
    # The seed paper that is not stored is left for `serve` to fetch.
    assert [a.payload for a in store.due_actions(("fetch_paper",))] == [FetchPaperPayload("2311.12092")]
    # One part: the others stay; an empty value empties it.
    ok(cli_run("subscribers", "interests", "ada@example.com", "--categories", "stat.ML", "--authors", ""))
    profile = store.profile(reader.id)
    assert (profile.interests, profile.authors, profile.categories, profile.picks) == (
        ("concept erasure", "video generation"), (), ("stat.ML",), 3)


def test_interests_forgets_a_readers_votes_and_brings_them_back(store, cli_run):
    reader, _ = store.add("ada@example.com")
    store.store_batch(load_batch(BATCH))
    store.record_vote(reader.id, "2503.00006", -1, "2025-03-11")
    store.record_vote(reader.id, "2503.00002", 1, "2025-03-11")
    result = cli_run("subscribers", "interests", "ada@example.com", "--forget-votes")
    assert "  votes:       0 up, 0 down" in ok(result)
    assert result.stderr == "Forgot 2 votes; --restore-votes brings them back within 30 days.\n"
    assert store.votes(reader.id) == [] and store.profile(reader.id).disliked == ()
    store.record_vote(reader.id, "2503.00002", -1, "2025-03-12")  # changed their mind since
    result = cli_run("subscribers", "interests", "ada@example.com", "--restore-votes")
    assert "  votes:       0 up, 2 down" in ok(result) and result.stderr == "Brought back 1 vote.\n"
    assert set(store.profile(reader.id).disliked) == {"2503.00002", "2503.00006"}
    both = cli_run("subscribers", "interests", "ada@example.com", "--forget-votes", "--restore-votes")
    assert both.exit_code == 2 and both.stdout == "" and "Usage:" in both.stderr
    assert both.stderr.strip().splitlines()[-1] == "Error: --forget-votes and --restore-votes undo each other; give one"
    assert len(store.votes(reader.id)) == 2  # nothing changed


def test_interests_sets_the_rest_of_the_day_and_keeps_it_when_other_parts_change(store, cli_run):
    reader, _ = store.add("ada@example.com")
    store.record_vote(reader.id, "2503.00006", 1, "2025-03-11")
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--rest", "COUNT"))
    assert "  rest:        count (one line)" in out.splitlines()
    assert store.profile(reader.id) == Profile(reader.id, liked=("2503.00006",), rest=RestOfDay.COUNT)
    ok(cli_run("subscribers", "interests", "ada@example.com", "--keywords", "graphs", "--picks", "2"))
    assert store.profile(reader.id).rest == RestOfDay.COUNT
    ok(cli_run("subscribers", "interests", "ada@example.com", "--rest", "titles"))
    assert store.profile(reader.id) == Profile(reader.id, ("graphs",), liked=("2503.00006",), picks=2)
    # Not a choice: a usage error naming the option and the choices, nothing saved.
    result = cli_run("subscribers", "interests", "ada@example.com", "--keywords", "changed", "--rest", "all")
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--rest'") and "'titles', 'count'" in last, result.stderr
    assert store.profile(reader.id).interests == ("graphs",)
    help_text = ok(cli_run("subscribers", "interests", "--help"))
    assert "--rest [titles|count]" in help_text and "one line linking the web edition" in " ".join(help_text.split())


def test_interests_mutes_phrases_and_chooses_where_they_hide_papers(store, cli_run):
    reader, _ = store.add("ada@example.com")
    store.record_vote(reader.id, "2503.00006", 1, "2025-03-11")
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--mute", "large language models;  LLMs ; llms"))
    assert "  muted:       large language models; LLMs (from picks)" in out.splitlines()
    assert store.profile(reader.id) == Profile(reader.id, liked=("2503.00006",),
                                               muted=("large language models", "LLMs"))
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--muting", "TOP", "--keywords", "graphs"))
    assert "  muted:       large language models; LLMs (from picks and the top cards)" in out.splitlines()
    profile = store.profile(reader.id)
    assert (profile.interests, profile.muted, profile.muting) == (("graphs",), ("large language models", "LLMs"),
                                                                   Muting.TOP)
    # Other parts change, the muted phrases stay; an empty value empties them.
    ok(cli_run("subscribers", "interests", "ada@example.com", "--picks", "2"))
    assert store.profile(reader.id).muted == ("large language models", "LLMs")
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--mute", ""))
    assert "  muted:       (none)" in out.splitlines() and store.profile(reader.id).muted == ()
    # Cut as interests are, with a warning naming the option.
    result = cli_run("subscribers", "interests", "ada@example.com", "--mute", "; ".join(f"m{n}" for n in range(25)))
    ok(result)
    assert len(store.profile(reader.id).muted) == 20
    assert "Warning: --mute: Only the first 20 muted phrases are kept." in result.stderr
    # Not a choice: a usage error naming the option, nothing saved.
    result = cli_run("subscribers", "interests", "ada@example.com", "--mute", "x", "--muting", "everywhere")
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    assert "Invalid value for '--muting'" in result.stderr and len(store.profile(reader.id).muted) == 20
    help_text = " ".join(ok(cli_run("subscribers", "interests", "--help")).split())
    assert "--mute 'A; B' Never show papers about these" in help_text and "--muting [picks|top]" in help_text


@pytest.mark.parametrize("option, value, message", [
    ("--categories", "cs.CV,vision", "--categories: “vision” is not an arXiv category"),
    ("--seed-papers", "2503.00002,nope", "--seed-papers: “nope” is not an arXiv paper"),
    ("--picks", "11", "--picks: The number of picks is a whole number from 0 to 10"),
    ("--picks", "-1", "--picks: "),
])
def test_interests_refuses_malformed_input_naming_the_option(store, cli_run, option, value, message):
    reader, _ = store.add("ada@example.com")
    store.save_profile(Profile(reader.id, ("graphs",)))
    result = cli_run("subscribers", "interests", "ada@example.com", "--keywords", "changed", option, value)
    one_line_error(result, message)
    assert result.stdout == ""
    assert store.profile(reader.id) == Profile(reader.id, ("graphs",))  # nothing saved


def test_interests_of_an_address_not_on_the_list(store, cli_run):
    one_line_error(cli_run("subscribers", "interests", "nobody@example.com"), "nobody@example.com is not on the list")
    one_line_error(cli_run("subscribers", "interests", "nobody@example.com", "--picks", "2"), "not on the list")


def test_interests_cuts_like_the_web_form_and_prints_safely(store, cli_run):
    reader, _ = store.add("ada@example.com")
    keywords = "; ".join([f"topic {n}" for n in range(30)] + ["x" * 500])
    result = cli_run("subscribers", "interests", "ada@example.com", "--keywords", keywords)
    ok(result)
    assert len(store.profile(reader.id).interests) == 20
    assert "Warning: --keywords: Only the first 20 interests are kept." in result.stderr
    # Stored text that would act on a terminal is shown escaped.
    store.save_profile(Profile(reader.id, ("\x1b]0;owned\x07 title", "\u202eevil"), ("Ada\tLovelace",)))
    out = ok(cli_run("subscribers", "interests", "ada@example.com"))
    assert "\x1b" not in out and "\u202e" not in out and "\t" not in out
    assert "\\x1b]0;owned\\x07 title; \\u202eevil" in out and "Ada\\tLovelace" in out


# --------------------------------------------------------------------------
# the CSV import


def test_the_import_reads_interests_and_authors_into_new_readers_profiles(store, cli_run, tmp_path):
    existing, _ = store.add("grace@example.com", "Grace")
    store.save_profile(Profile(existing.id, ("compilers",), picks=2))
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,interests,authors\n"
        'ada@example.com,Ada,"concept erasure; diffusion models",Alan Turing; Grace Hopper\n'
        "bob@example.com,Bob,,\n"
        'grace@example.com,Grace,"something else",Someone\n'
        f'carl@example.com,Carl,"<b>x</b>; {"y" * 300}; ' + "; ".join(f"t{n}" for n in range(40)) + '",\n',
        encoding="utf-8")
    out = ok(cli_run("subscribers", "import", str(path)))
    assert "added 3, already present 1" in out
    ada = store.get(email="ada@example.com")
    assert store.profile(ada.id) == Profile(ada.id, ("concept erasure", "diffusion models"),
                                            ("Alan Turing", "Grace Hopper"))
    bob = store.get(email="bob@example.com")
    assert store.profile(bob.id) == Profile(bob.id)
    carl = store.profile(store.get(email="carl@example.com").id)
    assert carl.interests[:2] == ("<b>x</b>", "y" * 100) and len(carl.interests) == 20
    # An existing reader's profile is never changed by an import.
    assert store.profile(existing.id) == Profile(existing.id, ("compilers",), picks=2)


def test_an_import_without_the_new_columns_makes_no_profiles(store, cli_run, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,name\nada@example.com,Ada\n", encoding="utf-8")
    ok(cli_run("subscribers", "import", str(path)))
    ada = store.get(email="ada@example.com")
    assert store.profile(ada.id) == Profile(ada.id)
    assert store.profiles([ada.id]) == {ada.id: Profile(ada.id)}


# --------------------------------------------------------------------------
# picks


@pytest.fixture
def readers(store):
    """Three active readers with profiles (one with none) and one who left."""
    found = {}
    for name, interests in (("ada", ("concept erasure",)), ("bob", ("protein structure",)), ("carl", ()),
                            ("dora", ("concept erasure",))):
        reader, _ = store.add(f"{name}@example.com")
        if interests:
            store.save_profile(Profile(reader.id, interests, picks=2))
        found[name] = reader
    store.change_status(found["dora"].id, "unsubscribed", source="cli", reason="left")
    return found


def test_picks_of_one_reader_with_scores_and_reasons(store, cli_run, readers):
    out = ok(cli_run("picks", str(BATCH), "--reader", "ada@example.com"))
    lines = out.splitlines()
    assert lines[0] == "ada@example.com: 2 picks"
    # The two papers about concept erasure, best first, each with its score and reason.
    assert [lines[1][:6], lines[3][:6]] == ["   1. ", "   2. "]
    assert sorted([lines[1][6:], lines[3][6:]]) == [
        "Erasing Concepts from Text-to-Image Diffusion Models (2503.00001)",
        "Robust Concept Unlearning in Diffusion Models (2503.00004)"]
    for line in (lines[2], lines[4]):
        score, why = line.split(None, 1)
        # The words that show the match follow the phrase, when there are others.
        assert (why == "matches *concept erasure*" or why.startswith("matches *concept erasure*: ")) and float(score) > 0
    assert float(lines[2].split()[0]) >= float(lines[4].split()[0])
    # The batch was stored, as an edition.
    assert store.edition_papers(load_batch(BATCH).date)[0] == "2503.00001"


def test_picks_never_include_a_rated_paper(store, cli_run, readers):
    store.store_batch(load_batch(BATCH))
    store.record_vote(readers["ada"].id, "2503.00001", 1, "2025-03-10")
    out = ok(cli_run("picks", str(BATCH), "--reader", "ada@example.com"))
    assert "2503.00001" not in out and "2503.00004" in out


def test_picks_of_all_active_readers_as_json_in_pick_order(store, cli_run, readers, monkeypatch):
    sizes = []
    real = EditionPicks.for_readers

    def counted(self, ids):
        ids = list(ids)
        sizes.append(len(ids))
        return real(self, ids)

    monkeypatch.setattr(EditionPicks, "for_readers", counted)
    monkeypatch.setattr(picks_command, "RANK_PAGE", 2)
    result = cli_run("picks", str(BATCH), "--all", "--json")
    found = json.loads(ok(result))
    assert [entry["email"] for entry in found] == ["ada@example.com", "bob@example.com", "carl@example.com"]
    assert sizes == [2, 1]  # in chunks, never the whole list at once
    ada, bob, carl = found
    assert sorted(p["arxiv_id"] for p in ada["picks"]) == ["2503.00001", "2503.00004"]
    titles = {"2503.00001": "Erasing Concepts from Text-to-Image Diffusion Models",
              "2503.00004": "Robust Concept Unlearning in Diffusion Models"}
    for pick in ada["picks"]:
        assert pick == {"title": titles[pick["arxiv_id"]], "arxiv_id": pick["arxiv_id"], "score": pick["score"],
                        "why": pick["why"]}
        assert pick["why"] == "matches *concept erasure*" or pick["why"].startswith("matches *concept erasure*: ")
    assert ada["picks"][0]["score"] >= ada["picks"][1]["score"]
    assert [p["arxiv_id"] for p in bob["picks"]][:1] == ["2503.00002"]
    assert (carl["state"], carl["picks"]) == ("invite", [])
    # The same picks as the edition's own ranking gives.
    batch = load_batch(BATCH)
    expected = EditionPicks(store, "2025-03-11", batch.date, batch.papers).for_readers([readers["ada"].id])
    assert [p["arxiv_id"] for p in ada["picks"]] == [batch.papers[p.position].arxiv_id
                                                     for p in expected[readers["ada"].id].picks]


def test_picks_text_for_readers_without_picks(store, cli_run, readers):
    store.save_profile(Profile(readers["bob"].id, ("protein structure",), picks=0))
    out = ok(cli_run("picks", str(BATCH), "--all"))
    assert "bob@example.com: no picks (picks turned off)" in out
    assert "carl@example.com: no picks (no interests yet)" in out
    assert "dora@example.com" not in out


@pytest.mark.parametrize("args", [[], ["--reader", "ada@example.com", "--all"]])
def test_picks_needs_exactly_one_of_reader_and_all(store, cli_run, readers, args):
    result = cli_run("picks", str(BATCH), *args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr and "give exactly one of --reader EMAIL and --all" in result.stderr
    assert store.edition_papers(load_batch(BATCH).date) == []  # nothing was stored


def test_picks_of_an_unknown_reader_and_of_a_bad_batch(store, cli_run, readers, tmp_path):
    one_line_error(cli_run("picks", str(BATCH), "--reader", "nobody@example.com"),
                   "nobody@example.com is not on the list")
    empty = tmp_path / "empty.json"
    empty.write_text('{"format": "newsletter-batch/1", "date": "2025-03-12", "papers": []}', encoding="utf-8")
    one_line_error(cli_run("picks", str(empty), "--all"), "has no papers")
    one_line_error(cli_run("picks", str(tmp_path / "missing.json"), "--all"), "no such file")
