"""Daily and weekly editions: the weekly edition built from the stored
papers, each reader's schedule honoured by `newsletter send` day after day
(the outbox sender, the real command), the overdue weekly, and the weekly
edition on the web."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from conftest import clean_env, outbox_file, wait_until
from newsletter.cli import cli
from newsletter.core.config import Settings
from newsletter.issue.editions import edition_batch
from newsletter.core.models import Batch, Edition, EditionKind, Frequency, Paper, Schedule
from newsletter.issue.render import encoded_bytes, render_issue
from newsletter.store import Ledger, open_store
from newsletter.store.schema import subscribers_table

MONDAY = dt.date(2026, 3, 9)
WEEK = [MONDAY + dt.timedelta(days=n) for n in range(7)]  # Mon 9 … Sun 15 Mar 2026
SUNDAY = WEEK[-1]


def paper(k: int, upvotes: int) -> dict:
    """Paper k of the simulated days, as a canonical batch entry."""
    return {"title": f"Paper {k}: a study of thing {k}", "abstract": f"We study thing {k} and report.",
            "authors": [f"Author {k}"], "arxiv_id": f"2603.{k:05d}", "upvotes": upvotes}


def day_papers(index: int) -> list[dict]:
    """Day ``index`` of the week lists papers index … index+2: each paper is
    on the list three days running, with more upvotes every day."""
    return [paper(k, 10 * k + index) for k in range(index, index + 3)]


def write_batch(folder: Path, day: dt.date, papers: list[dict]) -> Path:
    path = folder / f"{day}.json"
    path.write_text(json.dumps({"format": "newsletter-batch/1", "date": day.isoformat(), "papers": papers}),
                    encoding="utf-8")
    return path


def set_schedule(database_url: str, email: str, schedule: Schedule) -> None:
    store = open_store(database_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(subscribers_table).where(subscribers_table.c.email_key == email).values(
                frequency=schedule.frequency.value, weekday=schedule.weekday,
                paused_until=schedule.paused_until.isoformat() if schedule.paused_until else None))
    finally:
        store.close()


class Newsletter:
    """The `newsletter` command on one database and outbox."""

    def __init__(self, env: dict[str, str], folder: Path):
        self.env = env
        self.folder = folder
        self.outbox = Path(env["NEWSLETTER_OUTBOX_DIR"])

    def __call__(self, *args: str, code: int = 0):
        result = CliRunner().invoke(cli, list(args), env=self.env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    def add(self, *emails: str) -> None:
        csv = self.folder / "list.csv"
        csv.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
        self("subscribers", "import", str(csv))

    def send_day(self, index: int, *extra: str, code: int = 0):
        return self("send", str(write_batch(self.folder, WEEK[index], day_papers(index))), *extra, code=code)

    def ids(self) -> dict[str, int]:
        store = open_store(self.env["NEWSLETTER_DATABASE_URL"])
        try:
            return {s.email: s.id for s in store.iter_subscribers()}
        finally:
            store.close()

    def editions_of(self) -> dict[str, list[str]]:
        """{address: [edition key, …]} of every message in the outbox, in
        edition order."""
        names = {str(i): email for email, i in self.ids().items()}
        got = collections.defaultdict(list)
        for path in sorted(self.outbox.glob("*/*.eml")):
            got[names[path.name.split("-", 1)[0]]].append(path.parent.name)
        return {email: sorted(keys) for email, keys in got.items()}

    def message(self, edition: str, email: str):
        path = outbox_file(self.outbox / edition, self.ids()[email])
        return message_from_bytes(path.read_bytes(), policy=policy.default)


@pytest.fixture
def newsletter(env, tmp_path) -> Newsletter:
    return Newsletter(env, tmp_path)


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


# --------------------------------------------------------------------------
# the weekly edition's papers


def store_week(store) -> None:
    for index, day in enumerate(WEEK):
        store.store_batch(Batch(day, tuple(Paper(p["title"], p["abstract"], tuple(p["authors"]), p["arxiv_id"],
                                                  upvotes=p["upvotes"]) for p in day_papers(index))))


def test_a_weekly_edition_has_each_paper_of_its_week_once_ranked_by_upvotes_then_days(store):
    store_week(store)
    week = edition_batch(store, Edition(SUNDAY, EditionKind.WEEKLY))
    keys = [p.arxiv_id for p in week.papers]
    assert sorted(keys) == [f"2603.{k:05d}" for k in range(9)]  # papers 0 … 8, each once
    # Best upvotes first: paper 8 (86 on Sunday), then 7, … each with its best day's count.
    assert keys == [f"2603.{k:05d}" for k in range(8, -1, -1)]
    assert week.papers[0].upvotes == 86 and week.papers[-1].upvotes == 0
    assert week.missing_days == () and week.kind == EditionKind.WEEKLY


def test_days_on_the_list_break_ties_in_upvotes(store):
    store.store_batch(Batch(MONDAY, (Paper("Once", "a", arxiv_id="2603.00100", upvotes=5),
                                     Paper("Twice", "b", arxiv_id="2603.00200", upvotes=5))))
    store.store_batch(Batch(WEEK[1], (Paper("Twice", "b", arxiv_id="2603.00200", upvotes=5),)))
    week = edition_batch(store, Edition(SUNDAY, EditionKind.WEEKLY))
    assert [p.title for p in week.papers] == ["Twice", "Once"]
    assert week.missing_days == tuple(WEEK[2:])


def test_a_week_with_nothing_stored_has_no_papers_and_names_every_day(store):
    store_week(store)
    week = edition_batch(store, Edition(SUNDAY + dt.timedelta(days=14), EditionKind.WEEKLY))
    assert week.papers == () and len(week.missing_days) == 7


def test_a_daily_edition_from_the_store_is_its_days_batch_in_order(store):
    store_week(store)
    day = edition_batch(store, Edition(WEEK[2]))
    assert [(p.arxiv_id, p.upvotes) for p in day.papers] == [("2603.00002", 22), ("2603.00003", 32),
                                                              ("2603.00004", 42)]


def test_the_weekly_edition_says_what_it_is_and_which_days_it_covers(store):
    store.store_batch(Batch(WEEK[0], tuple(Paper(f"T{k}", "a", arxiv_id=f"2603.{k:05d}") for k in range(3))))
    store.store_batch(Batch(WEEK[3], tuple(Paper(f"T{k}", "a", arxiv_id=f"2603.{k:05d}") for k in range(2, 6))))
    issue = render_issue(edition_batch(store, Edition(SUNDAY, EditionKind.WEEKLY)),
                         Settings(base_url="https://news.example.org"))
    assert issue.subject == "Daily Papers · Weekly · 9–15 Mar 2026 · 6 papers"
    assert issue.edition == "2026-03-15-weekly" and issue.kind == EditionKind.WEEKLY
    assert issue.web_url == "https://news.example.org/issues/2026-03-15/weekly"
    assert "Top of the week" in issue.html and "Top of the day" not in issue.html
    assert "This week&#39;s papers" in issue.web_html and "Today&#39;s papers" not in issue.web_html
    for part in (issue.html, issue.text):
        assert "Weekly · 9–15 Mar 2026" in part
        # The days with no stored batch are named.
        assert "No papers stored for Tue 10 Mar, Wed 11 Mar, Fri 13 Mar, Sat 14 Mar, Sun 15 Mar." in " ".join(
            part.split())


@pytest.mark.parametrize("first, last, words", [
    (dt.date(2026, 2, 27), dt.date(2026, 3, 5), "27 Feb – 5 Mar 2026"),
    (dt.date(2025, 12, 29), dt.date(2026, 1, 4), "29 Dec 2025 – 4 Jan 2026"),
])
def test_a_week_across_a_month_or_a_year_is_named_with_both(first, last, words):
    assert Edition(last, EditionKind.WEEKLY).first_date == first
    assert Edition(last, EditionKind.WEEKLY).describe() == words


def test_a_weekly_edition_of_600_papers_stays_under_the_clip(store):
    for index, day in enumerate(WEEK):
        store.store_batch(Batch(day, tuple(
            Paper(f"Paper {index}-{k} on a long subject about learning", "We study it. " * 40,
                  (f"Author {k}", "Another Author"), f"26{index:02d}.{k:05d}", upvotes=k)
            for k in range(86))))
    issue = render_issue(edition_batch(store, Edition(SUNDAY, EditionKind.WEEKLY)), Settings())
    assert issue.paper_count == 602
    assert encoded_bytes(issue.html) < 100_000
    assert issue.card_count + issue.listed_count + issue.more_count == 602
    assert "Read all 602 papers on the web" in issue.html


def test_edition_keys_read_back():
    for edition in (Edition(SUNDAY), Edition(SUNDAY, EditionKind.WEEKLY)):
        assert Edition.parse(edition.key) == edition
    for bad in ("2026-03-15-daily", "20260315", "2026-03-15-weekly-weekly", "", "2026-02-30"):
        with pytest.raises(ValueError):
            Edition.parse(bad)


# --------------------------------------------------------------------------
# seven days of `newsletter send`


def test_seven_days_each_reader_gets_exactly_the_editions_of_their_schedule(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    readers = ["daily@example.org", "sunday@example.org", "default@example.org", "paused@example.org",
               "to-weekly@example.org", "to-daily@example.org"]
    newsletter.add(*readers)
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    set_schedule(db, "default@example.org", Schedule(Frequency.WEEKLY))  # the list's day: Monday
    set_schedule(db, "paused@example.org", Schedule(paused_until=WEEK[4]))  # back on Friday
    set_schedule(db, "to-daily@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    for index in range(7):
        if index == 3:  # on Thursday, before that day's run, two readers change their minds
            set_schedule(db, "to-weekly@example.org", Schedule(Frequency.WEEKLY, weekday=6))
            set_schedule(db, "to-daily@example.org", Schedule(Frequency.DAILY))
        newsletter.send_day(index)
    got = newsletter.editions_of()
    dailies = [day.isoformat() for day in WEEK]
    assert got["daily@example.org"] == dailies
    assert got["sunday@example.org"] == ["2026-03-15-weekly"]
    assert got["default@example.org"] == ["2026-03-09-weekly"]
    assert got["paused@example.org"] == dailies[4:]
    assert got["to-weekly@example.org"] == dailies[:3] + ["2026-03-15-weekly"]
    assert got["to-daily@example.org"] == dailies[3:]
    for keys in got.values():  # never two editions of one date
        assert len({key[:10] for key in keys}) == len(keys)

    # The week's papers, each once: paper 2 was on the list Mon, Tue and Wed.
    text = text_of(newsletter.message("2026-03-15-weekly", "sunday@example.org"))
    assert len(re.findall(r"Paper 2: a study of thing 2\b", text)) == 1
    assert all(f"Paper {k}: a study" in text for k in range(9))
    message = newsletter.message("2026-03-15-weekly", "sunday@example.org")
    assert message["Subject"] == "Daily Papers · Weekly · 9–15 Mar 2026 · 9 papers"
    assert message["X-Newsletter-Issue"] == "2026-03-15-weekly"
    # Monday's weekly covers 3–9 Mar, of which only Monday is stored: it says so.
    monday = " ".join(text_of(newsletter.message("2026-03-09-weekly", "default@example.org")).split())
    assert "No papers stored for Tue 3 Mar, Wed 4 Mar, Thu 5 Mar, Fri 6 Mar, Sat 7 Mar, Sun 8 Mar." in monday

    # Running the last day again sends nothing more.
    newsletter.send_day(6)
    assert newsletter.editions_of() == got


def test_an_overdue_weekly_goes_out_with_the_next_run_within_two_days_once(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("monday@example.org", "daily@example.org")
    set_schedule(db, "monday@example.org", Schedule(Frequency.WEEKLY, weekday=0))
    for index in range(6):  # Monday 9 (the weekly of 9 Mar) to Saturday 14
        newsletter.send_day(index)
    # The machine is down on Sunday 15 and Monday 16: Tuesday's run sends the
    # weekly of 16 Mar, once; Wednesday's does not send it again.
    folder = newsletter.folder
    tuesday = newsletter("send", str(write_batch(folder, dt.date(2026, 3, 17), [paper(50, 5)])))
    assert "Daily Papers · Weekly · 10–16 Mar 2026 · 7 papers: sent 1" in tuesday.output
    newsletter("send", str(write_batch(folder, dt.date(2026, 3, 18), [paper(51, 5)])))
    got = newsletter.editions_of()
    assert got["monday@example.org"] == ["2026-03-09-weekly", "2026-03-16-weekly"]
    assert got["daily@example.org"] == [day.isoformat() for day in WEEK[:6]] + ["2026-03-17", "2026-03-18"]
    # Down from Monday 23 to Wednesday 25: Thursday is too late for the 23rd's.
    newsletter("send", str(write_batch(folder, dt.date(2026, 3, 26), [paper(90, 5)])))
    assert newsletter.editions_of()["monday@example.org"] == ["2026-03-09-weekly", "2026-03-16-weekly"]


def test_an_overdue_weekly_within_two_days_after_two_missed_runs(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("sunday@example.org")
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    for index in range(6):
        newsletter.send_day(index)
    # Down on Sunday 15 and Monday 16; Tuesday's run sends the 15th's weekly.
    newsletter("send", str(write_batch(newsletter.folder, dt.date(2026, 3, 17), [paper(70, 1)])))
    assert newsletter.editions_of()["sunday@example.org"] == ["2026-03-15-weekly"]


def test_a_weekly_that_no_reader_had_is_not_overdue_for_a_reader_who_chose_its_day_later(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("reader@example.org")
    newsletter.send_day(0)  # Monday: the run happened; nobody was weekly
    set_schedule(db, "reader@example.org", Schedule(Frequency.WEEKLY, weekday=0))
    newsletter.send_day(1)  # Tuesday: Monday's weekly is not overdue
    assert newsletter.editions_of()["reader@example.org"] == ["2026-03-09"]


def test_a_week_with_nothing_stored_sends_nothing_and_says_so(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("sunday@example.org")
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    result = newsletter("send", "--date", SUNDAY.isoformat())
    assert "No papers stored for 2026-03-15: no daily edition." in result.output
    assert "No papers stored for 9–15 Mar 2026: no weekly edition." in result.output
    assert not newsletter.outbox.exists() or not list(newsletter.outbox.rglob("*.eml"))


def test_send_with_a_date_and_no_batch_sends_what_is_stored(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("daily@example.org", "sunday@example.org")
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    for index in range(6):
        newsletter("render", str(write_batch(newsletter.folder, WEEK[index], day_papers(index))))
    newsletter("render", str(write_batch(newsletter.folder, SUNDAY, day_papers(6))))
    newsletter("send", "--date", SUNDAY.isoformat())
    assert newsletter.editions_of() == {"daily@example.org": ["2026-03-15"],
                                        "sunday@example.org": ["2026-03-15-weekly"]}


def test_dry_run_shows_both_editions_and_their_readers(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("a@example.org", "b@example.org", "c@example.org")
    set_schedule(db, "c@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    for index in range(6):
        newsletter("render", str(write_batch(newsletter.folder, WEEK[index], day_papers(index))))
    result = newsletter.send_day(6, "--dry-run")
    lines = [line for line in result.output.splitlines() if line.startswith("Would send")]
    assert len(lines) == 2
    assert "daily edition 'Daily Papers · Sun 15 Mar 2026 · 3 papers' to 2 readers" in lines[0]
    assert "weekly edition 'Daily Papers · Weekly · 9–15 Mar 2026 · 9 papers' to 1 readers" in lines[1]
    assert not newsletter.outbox.exists() or not list(newsletter.outbox.rglob("*.eml"))


def test_a_locked_weekly_still_lets_the_daily_go_and_exits_4(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("daily@example.org", "sunday@example.org")
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    store = open_store(db)
    try:
        for index in range(6):
            store.store_batch(Batch(WEEK[index], (Paper(f"T{index}", "a", arxiv_id=f"2603.{index:05d}"),)))
        # A live run (this very process) holds the weekly edition's lock.
        owner = f"{socket.gethostname()}:{os.getpid()}:x"
        Ledger(store, Edition(SUNDAY, EditionKind.WEEKLY)).acquire(owner, lambda owner: False)
    finally:
        store.close()
    result = newsletter.send_day(6, code=4)
    assert "is sending the 2026-03-15-weekly issue" in result.output
    assert newsletter.editions_of() == {"daily@example.org": ["2026-03-15"]}


# --------------------------------------------------------------------------
# render, the web version and the archive


def test_render_weekly_writes_the_weekly_edition(newsletter):
    newsletter("db", "upgrade")  # render stores the days' papers into a database; it never creates one
    for index in range(7):
        newsletter("render", str(write_batch(newsletter.folder, WEEK[index], day_papers(index))))
    result = newsletter("render", "--weekly", "--date", SUNDAY.isoformat())
    assert "Daily Papers · Weekly · 9–15 Mar 2026 · 9 papers" in result.output
    facts = json.loads((newsletter.folder / "out" / "2026-03-15-weekly" / "issue.json").read_text())
    assert (facts["kind"], facts["edition"], facts["paper_count"]) == ("weekly", "2026-03-15-weekly", 9)
    # Nothing stored that week: a clear error, exit 2.
    result = newsletter("render", "--weekly", "--date", "2026-06-07", code=2)
    assert "Error:" in result.output and "nothing is stored" in result.output
    newsletter("render", code=2)  # no batch, no --weekly date


def test_the_archive_lists_serves_and_feeds_both_kinds(newsletter, web_client):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("sunday@example.org")
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    for index in range(7):
        newsletter.send_day(index)
    client = web_client()
    listing = client.get("/issues/").get_data(as_text=True)
    assert 'href="2026-03-15/weekly"' in listing and 'href="2026-03-15"' in listing
    assert listing.index("2026-03-15/weekly") < listing.index('href="2026-03-15"')
    weekly = client.get("/issues/2026-03-15/weekly")
    assert weekly.status_code == 200 and "Weekly · 9–15 Mar 2026" in weekly.get_data(as_text=True)
    assert "Tuesday 10 March 2026" in client.get("/issues/2026-03-10").get_data(as_text=True)
    assert client.get("/issues/2026-03-14/weekly").status_code == 404
    assert client.get("/issues/20260315/weekly").status_code == 404
    feed = client.get("/issues/feed.xml").get_data(as_text=True)
    assert "/issues/2026-03-15/weekly</id>" in feed and "/issues/2026-03-15</id>" in feed


def test_a_vote_from_a_weekly_edition_names_the_weeks_paper(newsletter, web_client):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("sunday@example.org")
    set_schedule(db, "sunday@example.org", Schedule(Frequency.WEEKLY, weekday=6))
    for index in range(7):
        newsletter.send_day(index)
    text = text_of(newsletter.message("2026-03-15-weekly", "sunday@example.org"))
    # The second paper of the weekly edition is paper 7; its 👍 link names it.
    up = re.findall(r"👍 (\S+)", text)[1]
    client = web_client()
    settings = client.application.extensions["newsletter"].settings
    page = client.get(up.replace(settings.web_base, ""))
    assert page.status_code == 200 and "Paper 7: a study of thing 7" in page.get_data(as_text=True)


def test_a_weekly_send_that_stopped_is_finished_by_the_next_run(newsletter):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    newsletter.add("a@example.org", "b@example.org")
    for email in ("a@example.org", "b@example.org"):
        set_schedule(db, email, Schedule(Frequency.WEEKLY, weekday=0))
    newsletter.send_day(0, "--limit", "1")  # Monday's weekly reaches one of its two readers
    assert sorted(newsletter.editions_of().values()) == [["2026-03-09-weekly"]]
    newsletter.send_day(1)  # Tuesday's run finishes it
    assert newsletter.editions_of() == {"a@example.org": ["2026-03-09-weekly"],
                                        "b@example.org": ["2026-03-09-weekly"]}


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 1)])
def test_a_signal_stops_the_whole_run_and_the_next_run_sends_both_editions_once(newsletter, tmp_path, signum, code):
    db = newsletter.env["NEWSLETTER_DATABASE_URL"]
    daily = [f"daily{i:02d}@example.org" for i in range(40)]
    weekly = [f"weekly{i:02d}@example.org" for i in range(40)]
    newsletter.add(*daily, *weekly)
    store = open_store(db)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(subscribers_table).where(subscribers_table.c.email_key.in_(weekly))
                         .values(frequency=Frequency.WEEKLY.value, weekday=0))  # Monday's weekly
    finally:
        store.close()
    batch = write_batch(tmp_path, WEEK[0], day_papers(0))
    # One reader a call, ten a second: the daily edition takes seconds.
    paced = clean_env(**newsletter.env, NEWSLETTER_MAX_SEND_RATE="10", NEWSLETTER_SEND_CONCURRENCY="1")
    run = subprocess.Popen([sys.executable, "-m", "newsletter", "send", str(batch)], cwd=tmp_path, env=paced,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list((newsletter.outbox / "2026-03-09").glob("*.eml"))) >= 3 or run.poll() is not None,
                   "the daily edition to start")
        run.send_signal(signum)  # Ctrl-C, or a stop by systemd
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == code, out + err
    assert f"{signal.Signals(signum).name}: finishing the calls in flight, then stopping" in err
    assert "Not started: the weekly edition of 2026-03-09" in err
    assert "Traceback" not in err
    got = newsletter.editions_of()
    assert 3 <= len(got) < len(daily), "the daily edition was not stopped midway"
    assert set(got) <= set(daily) and all(keys == ["2026-03-09"] for keys in got.values())
    store = open_store(db)
    try:
        assert Ledger(store, Edition(WEEK[0], EditionKind.WEEKLY)).counts()["sent"] == 0
    finally:
        store.close()

    newsletter("send", str(batch))  # the next run finishes both editions
    got = newsletter.editions_of()
    assert got == {**{email: ["2026-03-09"] for email in daily}, **{email: ["2026-03-09-weekly"] for email in weekly}}
    assert len(list(newsletter.outbox.glob("*/*.eml"))) == len(daily) + len(weekly)  # each exactly once
