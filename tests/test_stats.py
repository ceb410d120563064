"""Per-issue delivery figures (``newsletter.feedback.stats``) and ``newsletter stats``.

Sends are simulated through the real send ledger (``Ledger.mark_pending``
then ``Ledger.record``, as a send does, then dated when the send is meant
to have happened), feedback through ``Store.apply_feedback``, unsubscribes
through ``Store.unsubscribe``; one test sends for real with ``newsletter send``.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from conftest import EXAMPLE, SECRET
from newsletter.cli import cli
from newsletter.feedback.stats import (
    BOUNCE_REVIEW,
    COMPLAINT_REVIEW,
    WARN_SHARE,
    IssueStats,
    edition_stats,
    issue_stats,
)
from newsletter.core.models import DeliveryStatus, Edition, EditionKind, Feedback, SubscriberRow, SubscriberStatus
from newsletter.store import Ledger
from newsletter.store.ledger import LedgerRow
from newsletter.store.schema import deliveries_table, events_table

FAILED = DeliveryStatus.FAILED
SENT = DeliveryStatus.SENT
UNKNOWN = DeliveryStatus.UNKNOWN
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

_ids = itertools.count()


def readers(store, count: int, prefix: str = "reader") -> list:
    store.import_subscribers(SubscriberRow(i, f"{prefix}{i:03d}@example.com", None) for i in range(count))
    return [s for s in store.iter_subscribers() if s.email.startswith(prefix)]


def send(store, day: dt.date, to: list, status: str = SENT, sent_at: dt.datetime | None = None,
         kind: EditionKind = EditionKind.DAILY) -> None:
    """Ledger rows for ``to`` as a send of the edition of ``day`` and
    ``kind`` writes them: pending, then the outcome; then dated ``sent_at``
    (default: 06:00 UTC on the issue's day), when the send is meant to have
    happened."""
    ledger = Ledger(store, Edition(day, kind))
    ledger.mark_pending([r.id for r in to])
    ledger.record([LedgerRow(r.id, status, f"0100-{day}-{r.id}" if status == SENT else None,
                             None if status == SENT else "refused") for r in to])
    with store.engine.begin() as conn:
        conn.execute(update(deliveries_table)
                     .where(deliveries_table.c.issue_date == ledger.day,
                            deliveries_table.c.subscriber_id.in_([r.id for r in to]))
                     .values(updated_at=sent_at or at(day, 6)))


def feedback(store, day: dt.date | None, kind: str, reader, **fields) -> None:
    issue = day.isoformat() if day else None
    store.apply_feedback(f"sns-{next(_ids)}", [Feedback(kind, reader.email, issue, **fields)])


def permanent(store, day, reader):
    feedback(store, day, "bounce", reader, bounce_type="Permanent", bounce_subtype="General",
             detail="smtp; 550 5.1.1 user unknown")


def unsubscribe_at(store, reader, source: str, moment: dt.datetime) -> None:
    """``reader`` unsubscribes (through ``source``); the event is then dated
    ``moment``, the only way to put an unsubscribe between past issues."""
    assert store.unsubscribe(reader.ref, source=source, reason="test")[1]
    with store.engine.begin() as conn:
        conn.execute(update(events_table)
                     .where(events_table.c.subscriber_id == reader.id, events_table.c.new_status == UNSUBSCRIBED)
                     .values(at=moment))


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------
# issue_stats


D0 = dt.date(2025, 1, 2)  # outside the window
D1 = dt.date(2025, 3, 10)
D2 = dt.date(2025, 3, 12)
NOW = dt.datetime(2025, 3, 20, 12, tzinfo=dt.timezone.utc)


def test_issue_stats_counts_each_issue(store):
    people = readers(store, 50)

    send(store, D0, people[:10])
    for r in people[:5]:
        permanent(store, D0, r)

    send(store, D1, people[:40])
    send(store, D1, people[40:42], FAILED)  # refused by the provider: not sent
    send(store, D1, people[42:43], UNKNOWN)  # outcome unknown: not counted as sent
    for r in people[:30]:
        feedback(store, D1, "delivery", r)
    feedback(store, D1, "delivery", people[0])  # a redelivered report counts once
    permanent(store, D1, people[30])
    permanent(store, D1, people[31])
    feedback(store, D1, "bounce", people[32], bounce_type="Transient", bounce_subtype="MailboxFull")
    feedback(store, D1, "bounce", people[33], bounce_type="Undetermined")
    feedback(store, D1, "complaint", people[34], detail="abuse")
    feedback(store, None, "complaint", people[35], detail="abuse")  # no issue header: not attributable

    send(store, D2, people[:25])
    for r in people[:25]:
        feedback(store, D2, "delivery", r)

    unsubscribe_at(store, people[5], "web", at(D1, 12))  # after D1, before D2
    unsubscribe_at(store, people[6], "one-click", at(D2, 9))  # after D2
    unsubscribe_at(store, people[8], "one-click", at(D2 + dt.timedelta(days=3), 9))  # still after D2
    unsubscribe_at(store, people[7], "cli", at(D1, 13))  # by the operator: not a reader's choice
    unsubscribe_at(store, people[9], "web", at(D1 - dt.timedelta(days=1), 9))  # before any issue shown

    rows = issue_stats(store, days=30, now=NOW)

    assert rows == [
        IssueStats(issue_date="2025-03-12", sent=25, delivered=25, bounced=0, complained=0, unsubscribed=2),
        IssueStats(issue_date="2025-03-10", sent=40, delivered=30, bounced=2, complained=1, unsubscribed=1),
    ]
    newest, older = rows
    assert (newest.bounce_rate, newest.complaint_rate, newest.warnings()) == (0.0, 0.0, [])
    assert older.bounce_rate == pytest.approx(0.05)
    assert older.complaint_rate == pytest.approx(0.025)
    assert older.warnings() == [
        "bounce rate 5.00% is OVER the 5% SES review limit",
        "complaint rate 2.500% is OVER the 0.1% SES review limit",
    ]
    # A wider window takes the older issue in.
    assert [r.issue_date for r in issue_stats(store, days=90, now=NOW)] == ["2025-03-12", "2025-03-10",
                                                                                "2025-01-02"]
    assert issue_stats(store, days=90, now=NOW)[-1].bounced == 5


def test_issue_stats_with_nothing_sent(store):
    readers(store, 3)
    assert issue_stats(store, days=30, now=NOW) == []


def test_a_bounce_reported_twice_for_one_reader_counts_once(store):
    people = readers(store, 20)
    send(store, D1, people)
    permanent(store, D1, people[0])
    permanent(store, D1, people[0])  # the same bounce through identity and configuration-set notifications
    [row] = issue_stats(store, days=30, now=NOW)
    assert row.bounced == 1 and row.bounce_rate == pytest.approx(0.05)


def test_the_window_is_when_the_send_happened_not_the_issue_date(store):
    people = readers(store, 30)
    long_ago = dt.date(2024, 11, 4)  # a day of papers months old...
    send(store, long_ago, people[:20], sent_at=NOW - dt.timedelta(hours=3))  # ...sent today
    permanent(store, long_ago, people[0])
    recent = NOW.date() - dt.timedelta(days=2)  # dated recently, sent 40 days ago (a date given by hand)
    send(store, recent, people[20:], sent_at=NOW - dt.timedelta(days=40))

    assert issue_stats(store, days=30, now=NOW) == [
        IssueStats(issue_date="2024-11-04", sent=20, delivered=0, bounced=1, complained=0, unsubscribed=0),
    ]
    assert [r.issue_date for r in issue_stats(store, days=45, now=NOW)] == ["2024-11-04", recent.isoformat()]


def test_an_issue_finished_in_the_window_keeps_all_its_readers(store):
    people = readers(store, 12)
    day = dt.date(2025, 2, 1)
    send(store, day, people[:10], sent_at=NOW - dt.timedelta(days=40))
    send(store, day, people[10:], sent_at=NOW - dt.timedelta(days=5))  # the rest, sent by a later run
    unsubscribe_at(store, people[3], "web", NOW - dt.timedelta(days=39))  # after the send began

    [row] = issue_stats(store, days=30, now=NOW)
    assert (row.issue_date, row.sent, row.unsubscribed) == ("2025-02-01", 12, 1)


def test_unsubscribes_go_to_the_issue_sent_last_before_them(store):
    people = readers(store, 10)
    first, second = dt.date(2025, 3, 1), dt.date(2024, 6, 1)  # the second send is of an older day
    send(store, first, people, sent_at=at(dt.date(2025, 3, 10), 6))
    send(store, second, people, sent_at=at(dt.date(2025, 3, 12), 6))
    unsubscribe_at(store, people[0], "web", at(dt.date(2025, 3, 11), 9))
    unsubscribe_at(store, people[1], "one-click", at(dt.date(2025, 3, 13), 9))
    unsubscribe_at(store, people[2], "web", at(dt.date(2025, 3, 14), 9))

    rows = issue_stats(store, days=30, now=NOW)
    assert [(r.issue_date, r.unsubscribed) for r in rows] == [("2024-06-01", 2), ("2025-03-01", 1)]


# --------------------------------------------------------------------------
# warnings against the SES review limits


def stats(sent: int, bounced: int = 0, complained: int = 0) -> IssueStats:
    return IssueStats("2025-03-10", sent, sent - bounced, bounced, complained, 0)


def test_the_limits_are_the_ones_ses_publishes():
    assert (BOUNCE_REVIEW, COMPLAINT_REVIEW, WARN_SHARE) == (0.05, 0.001, 0.8)


@pytest.mark.parametrize("sent, bounced, expected", [
    (100, 0, None),
    (100, 3, None),
    (1000, 39, None),  # 3.9%
    (100, 4, "near"),  # exactly 80% of 5%
    (25, 1, "near"),  # 4% again
    (1000, 40, "near"),
    (1000, 49, "near"),
    (100, 5, "OVER"),  # exactly 5%
    (20, 1, "OVER"),
    (100, 10, "OVER"),
    (7, 7, "OVER"),
])
def test_bounce_warnings(sent, bounced, expected):
    warnings = stats(sent, bounced=bounced).warnings()
    if expected is None:
        assert warnings == []
    else:
        assert warnings == [f"bounce rate {bounced / sent:.2%} is {expected} the 5% SES review limit"]


@pytest.mark.parametrize("sent, complained, expected", [
    (10_000, 0, None),
    (10_000, 7, None),
    (1_300, 1, None),  # 0.077%
    (10_000, 8, "near"),  # exactly 80% of 0.1%
    (1_250, 1, "near"),  # 0.08% again
    (10_000, 9, "near"),
    (10_000, 10, "OVER"),  # exactly 0.1%
    (1_000, 1, "OVER"),
    (100, 3, "OVER"),
])
def test_complaint_warnings(sent, complained, expected):
    warnings = stats(sent, complained=complained).warnings()
    if expected is None:
        assert warnings == []
    else:
        assert warnings == [f"complaint rate {complained / sent:.3%} is {expected} the 0.1% SES review limit"]


def test_both_warnings_at_once_and_none_without_sends():
    assert [w.split()[0] for w in stats(100, bounced=5, complained=1).warnings()] == ["bounce", "complaint"]
    empty = stats(0)
    assert (empty.bounce_rate, empty.complaint_rate, empty.warnings()) == (0.0, 0.0, [])


# --------------------------------------------------------------------------
# `newsletter stats`


def run_stats(database_url: str, *args: str):
    return CliRunner().invoke(cli, ["stats", *args], env={"NEWSLETTER_DATABASE_URL": database_url},
                              catch_exceptions=False)


def table(result) -> dict[str, list[str]]:
    """The command's table rows by issue date, each split into its columns."""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["issue", "sent", "delivered", "bounced", "complained", "unsubscribed", "bounce",
                                "complaint"]
    assert lines[-1].startswith("SES reviews accounts at a 5% bounce rate or a 0.1% complaint rate")
    return {line.split()[0]: line.split()[1:] for line in lines[1:-1]}


def test_cli_says_when_no_issue_was_sent(store, database_url):
    readers(store, 2)
    result = run_stats(database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "No issue sent in the last 30 days.\n"
    assert result.stderr == ""
    assert run_stats(database_url, "--days", "7").stdout == "No issue sent in the last 7 days.\n"


def test_cli_prints_the_table_and_warns_near_the_bounce_limit(store, database_url):
    today = dt.date.today()
    recent, old = today - dt.timedelta(days=2), today - dt.timedelta(days=40)
    people = readers(store, 25)
    send(store, old, people[:10])
    send(store, recent, people)
    for r in people[1:]:
        feedback(store, recent, "delivery", r)
    permanent(store, recent, people[0])  # 1 in 25: 4%, 80% of the limit
    assert store.unsubscribe(people[3].ref, source="one-click", reason="test")[1]

    result = run_stats(database_url)

    assert result.exit_code == 0, result.output
    assert table(result) == {recent.isoformat(): ["25", "24", "1", "0", "1", "4.00%", "0.000%"]}
    assert result.stderr == f"WARNING {recent}: bounce rate 4.00% is near the 5% SES review limit\n"
    assert "WARNING" not in result.stdout

    wider = run_stats(database_url, "--days", "60")
    assert list(table(wider)) == [recent.isoformat(), old.isoformat()]
    assert table(wider)[old.isoformat()] == ["10", "0", "0", "0", "0", "0.00%", "0.000%"]


def test_cli_warns_over_the_complaint_limit(store, database_url):
    day = dt.date.today() - dt.timedelta(days=1)
    people = readers(store, 200)
    send(store, day, people)
    feedback(store, day, "complaint", people[7], detail="abuse")  # 0.5%

    result = run_stats(database_url)

    assert result.exit_code == 0, result.output
    assert table(result)[day.isoformat()] == ["200", "0", "0", "1", "0", "0.00%", "0.500%"]
    assert result.stderr == f"WARNING {day}: complaint rate 0.500% is OVER the 0.1% SES review limit\n"


def test_cli_is_quiet_below_the_limits(store, database_url):
    day = dt.date.today() - dt.timedelta(days=1)
    people = readers(store, 100)
    send(store, day, people)
    for r in people[:3]:
        permanent(store, day, r)  # 3%: below 80% of 5%

    result = run_stats(database_url)

    assert result.exit_code == 0, result.output
    assert table(result)[day.isoformat()][:3] == ["100", "0", "3"]
    assert result.stderr == ""


def test_cli_refuses_a_bad_days_value(database_url):
    result = CliRunner().invoke(cli, ["stats", "--days", "0"], env={"NEWSLETTER_DATABASE_URL": database_url})
    assert result.exit_code == 2
    assert "--days" in result.stderr


def test_cli_shows_an_old_day_sent_today(store, database_url):
    # As after `make demo`: the example day (11 March 2025) is sent today.
    readers(store, 4)
    env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": SECRET,
           "NEWSLETTER_OUTBOX_DIR": "outbox"}
    sent = CliRunner().invoke(cli, ["send", str(EXAMPLE), "--date", "2025-03-11"], env=env, catch_exceptions=False)
    assert sent.exit_code == 0, sent.output

    result = run_stats(database_url, "--days", "30")

    assert result.exit_code == 0, result.output
    assert table(result) == {"2025-03-11": ["4", "0", "0", "0", "0", "0.00%", "0.000%"]}
    assert run_stats(database_url, "--days", "1").exit_code == 0
    assert "2025-03-11" in run_stats(database_url, "--days", "1").stdout


def test_an_unsubscribe_counts_against_the_last_edition_that_reader_was_sent(store, database_url):
    day = dt.date.today() - dt.timedelta(days=3)
    dailies, weeklies = readers(store, 4, "daily"), readers(store, 3, "weekly")
    send(store, day, dailies, sent_at=at(day, 6))
    send(store, day, weeklies, sent_at=at(day, 7), kind=EditionKind.WEEKLY)  # begun after the daily
    unsubscribe_at(store, dailies[0], "web", at(day, 12))  # got the daily, never the weekly
    unsubscribe_at(store, dailies[1], "one-click", at(day + dt.timedelta(days=1), 9))
    unsubscribe_at(store, weeklies[0], "web", at(day, 13))
    never_sent = readers(store, 1, "new")[0]  # joined after both sends, left before getting anything
    unsubscribe_at(store, never_sent, "web", at(day, 14))

    weekly = f"{day}-weekly"
    assert table(run_stats(database_url)) == {weekly: ["3", "0", "0", "0", "1", "0.00%", "0.000%"],
                                              day.isoformat(): ["4", "0", "0", "0", "2", "0.00%", "0.000%"]}
    # The dashboard's figures agree.
    assert {row.issue_date: row.unsubscribed for row in edition_stats(store, [weekly, day.isoformat()])} == {
        weekly: 1, day.isoformat(): 2}
