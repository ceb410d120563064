"""How often each reader gets the newsletter (daily, weekly on a day, or
paused until a date), as the operator sets it: ``newsletter subscribers
interests`` and the CSV import and export; stored on both databases (the
``store`` fixture: SQLite, then PostgreSQL).

A pause is not a frequency: it keeps the one the reader resumes, and
choosing daily or weekly ends it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.interests import choose_schedule, parse_schedule_cells
from newsletter.lists import read_subscriber_csv, write_subscriber_csv
from newsletter.models import Frequency, Profile, Schedule, Subscriber
from newsletter.store import open_store

DAILY, WEEKLY = Frequency.DAILY, Frequency.WEEKLY
MON, THU, FRI, SAT = 0, 3, 4, 5


def today_of(store) -> dt.date:
    """The store's today, which a pause must end after."""
    return store.clock().date()


def schedule_of(store, email_address: str) -> Schedule:
    return store.get(email=email_address).schedule


# --------------------------------------------------------------------------
# choosing


def test_choosing_changes_only_what_the_choice_is_about():
    weekly_fri = Schedule(WEEKLY, FRI)
    day = dt.date(2030, 1, 10)
    # Daily: no day, no pause.
    assert choose_schedule(Schedule(WEEKLY, FRI, day), "daily") == Schedule(DAILY)
    # Weekly: the day given, else the day they had, else the list's (None); a pause ends.
    assert choose_schedule(Schedule(DAILY, None, day), "weekly") == Schedule(WEEKLY)
    assert choose_schedule(Schedule(WEEKLY, FRI, day), "weekly") == weekly_fri
    assert choose_schedule(weekly_fri, "weekly", SAT) == Schedule(WEEKLY, SAT)
    # A pause keeps the frequency (and day) they come back to.
    assert choose_schedule(weekly_fri, "paused", paused_until=day) == Schedule(WEEKLY, FRI, day)
    assert choose_schedule(Schedule(DAILY), "paused", paused_until=day) == Schedule(DAILY, None, day)
    assert choose_schedule(weekly_fri, "paused", SAT, day) == Schedule(WEEKLY, SAT, day)
    # A day means nothing to a daily reader.
    assert choose_schedule(Schedule(DAILY), "paused", SAT, day) == Schedule(DAILY, None, day)
    # No choice: only a weekly reader's day changes, the pause stays.
    assert choose_schedule(Schedule(WEEKLY, FRI, day), None, MON) == Schedule(WEEKLY, MON, day)
    with pytest.raises(ValueError):
        choose_schedule(weekly_fri, "paused")
    with pytest.raises(ValueError):
        choose_schedule(weekly_fri, "monthly")


def test_an_ended_pause_is_no_pause():
    day = dt.date(2030, 1, 10)
    paused = Schedule(WEEKLY, FRI, day)
    assert paused.as_of(day - dt.timedelta(days=1)) == paused
    assert paused.as_of(day) == Schedule(WEEKLY, FRI)  # that day's edition is sent
    assert paused.as_of(day).describe(MON) == "weekly on Friday"


def test_set_schedule_stores_it_and_refuses_what_is_not_a_schedule(store):
    reader, _ = store.add("ada@example.com")
    assert reader.schedule == Schedule(DAILY)
    day = today_of(store) + dt.timedelta(days=9)
    assert store.set_schedule(reader.id, Schedule(WEEKLY, SAT, day)) is True
    assert schedule_of(store, "ada@example.com") == Schedule(WEEKLY, SAT, day)
    for wrong in (Schedule(WEEKLY, 7), Schedule(WEEKLY, -1), Schedule(WEEKLY, True), Schedule(WEEKLY, "4"),
                  Schedule("monthly"), Schedule(DAILY, None, dt.datetime(2030, 1, 1)),
                  Schedule(DAILY, None, "2030-01-01")):
        with pytest.raises(ValueError):
            store.set_schedule(reader.id, wrong)
        with pytest.raises(ValueError):
            store.save_profile(Profile(reader.id, ("changed",)), schedule=wrong)
    assert schedule_of(store, "ada@example.com") == Schedule(WEEKLY, SAT, day)
    assert store.profile(reader.id) == Profile(reader.id)
    assert store.set_schedule(reader.id + 100, Schedule(DAILY)) is False


# --------------------------------------------------------------------------
# the command line


@pytest.fixture
def run(database_url):
    def invoke(*args: str, **env: str):
        return CliRunner().invoke(cli, list(args), env={"NEWSLETTER_DATABASE_URL": database_url, **env},
                                  catch_exceptions=False)

    return invoke


def ok(result) -> str:
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def frequency_line(out: str) -> str:
    [line] = [line for line in out.splitlines() if line.startswith("  frequency:")]
    return line.removeprefix("  frequency:").strip()


def test_the_operator_sets_each_frequency_and_sees_it_in_words(store, run):
    reader, _ = store.add("ada@example.com")
    assert frequency_line(ok(run("subscribers", "interests", "ada@example.com"))) == "daily"
    # Weekly on the list's day, whatever it is.
    out = ok(run("subscribers", "interests", "ada@example.com", "--frequency", "weekly"))
    assert frequency_line(out) == "weekly on Monday"
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, None)
    out = ok(run("subscribers", "interests", "ada@example.com", NEWSLETTER_WEEKLY_DAY="thu"))
    assert frequency_line(out) == "weekly on Thursday"
    # A weekly reader's day alone.
    out = ok(run("subscribers", "interests", "ada@example.com", "--weekday", "Friday"))
    assert frequency_line(out) == "weekly on Friday" and schedule_of(store, reader.email) == Schedule(WEEKLY, FRI)
    # A pause keeps the frequency and day they resume.
    until = today_of(store) + dt.timedelta(days=12)
    out = ok(run("subscribers", "interests", "ada@example.com", "--frequency", "paused", "--until", until.isoformat()))
    assert frequency_line(out) == f"paused until {until}, then weekly on Friday"
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, FRI, until)
    # Daily ends the pause and forgets the day; weekly again is on the list's day.
    assert frequency_line(ok(run("subscribers", "interests", "ada@example.com", "--frequency", "daily"))) == "daily"
    assert schedule_of(store, reader.email) == Schedule(DAILY)
    ok(run("subscribers", "interests", "ada@example.com", "--frequency", "WEEKLY", "--weekday", "sat"))
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, SAT)
    # With other options: both saved, the profile's other parts kept.
    out = ok(run("subscribers", "interests", "ada@example.com", "--keywords", "graphs", "--frequency", "daily"))
    assert "  interests:   graphs" in out and frequency_line(out) == "daily"
    assert store.profile(reader.id).interests == ("graphs",) and schedule_of(store, reader.email) == Schedule(DAILY)
    # The other options change no schedule.
    store.set_schedule(reader.id, Schedule(WEEKLY, FRI, until))
    ok(run("subscribers", "interests", "ada@example.com", "--picks", "3"))
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, FRI, until)


def test_a_pause_that_ended_is_shown_as_the_frequency_it_resumed(store, run):
    reader, _ = store.add("ada@example.com")
    store.set_schedule(reader.id, Schedule(WEEKLY, FRI, today_of(store)))
    assert frequency_line(ok(run("subscribers", "interests", "ada@example.com"))) == "weekly on Friday"


@pytest.mark.parametrize("args, message", [
    (("--frequency", "paused"), "--frequency paused needs --until YYYY-MM-DD"),
    (("--until", "2099-01-01"), "--until goes with --frequency paused"),
    (("--frequency", "weekly", "--until", "2099-01-01"), "--until goes with --frequency paused"),
    (("--frequency", "daily", "--weekday", "fri"), "--weekday goes with --frequency weekly"),
    (("--weekday", "fri"), "--weekday goes with --frequency weekly (ada@example.com is not weekly)"),
    (("--frequency", "paused", "--until", "2099-01-01", "--weekday", "fri"), "ada@example.com is not weekly"),
    (("--frequency", "monthly"), "Invalid value for '--frequency'"),
])
def test_options_that_do_not_go_together_are_usage_errors(store, run, args, message):
    reader, _ = store.add("ada@example.com")
    result = run("subscribers", "interests", "ada@example.com", "--keywords", "changed", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error:") and message in last, result.stderr
    assert "Usage:" in result.stderr
    assert (schedule_of(store, reader.email), store.profile(reader.id)) == (Schedule(DAILY), Profile(reader.id))


@pytest.mark.parametrize("args, message", [
    (("--frequency", "weekly", "--weekday", "fr"), "--weekday: “fr” is not a day of the week (mon, tue, wed"),
    (("--frequency", "paused", "--until", "2020-01-01"),
     "--until: 2020-01-01 is in the past: a pause ends on a day after today"),
    (("--frequency", "paused", "--until", "today"), "--until: “today” is not a date (YYYY-MM-DD"),
    (("--frequency", "paused", "--until", "2030-02-30"), "--until: “2030-02-30” is not a date"),
    (("--frequency", "paused", "--until", "20991231"), "--until: “20991231” is not a date"),
])
def test_malformed_days_and_dates_are_refused_naming_the_option(store, run, args, message):
    reader, _ = store.add("ada@example.com")
    store.set_schedule(reader.id, Schedule(WEEKLY, SAT))
    result = run("subscribers", "interests", "ada@example.com", "--keywords", "changed", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error and message in error, error
    assert (schedule_of(store, reader.email), store.profile(reader.id)) == (Schedule(WEEKLY, SAT), Profile(reader.id))


def test_a_pause_must_end_after_today(store, run):
    reader, _ = store.add("ada@example.com")
    today = today_of(store)
    result = run("subscribers", "interests", "ada@example.com", "--frequency", "paused", "--until", today.isoformat())
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: --until: {today} is today: a pause ends on a day after today ({today})."
    tomorrow = today + dt.timedelta(days=1)
    ok(run("subscribers", "interests", "ada@example.com", "--frequency", "paused", "--until", tomorrow.isoformat()))
    assert schedule_of(store, reader.email) == Schedule(DAILY, None, tomorrow)


def test_every_new_option_has_help(run):
    out = ok(run("subscribers", "interests", "--help"))
    for option in ("--frequency [daily|weekly|paused]", "--weekday mon…sun", "--until YYYY-MM-DD"):
        assert option in out, out
    assert "NEWSLETTER_WEEKLY_DAY" in out and "after today" in out


# --------------------------------------------------------------------------
# CSV import and export


def test_the_import_reads_the_frequency_and_paused_until_columns(store, run, tmp_path):
    existing, _ = store.add("grace@example.com")
    path = tmp_path / "list.csv"
    path.write_text(
        "email,name,frequency,paused_until\n"
        "ada@example.com,Ada,weekly:fri,\n"
        "alan@example.com,Alan,Weekly : Saturday,2030-04-01\n"
        "barbara@example.com,Barbara,weekly,\n"
        "edsger@example.com,Edsger,daily,2030-04-01\n"
        "carl@example.com,Carl,,\n"
        "grace@example.com,Grace,weekly:mon,\n",
        encoding="utf-8")
    assert "added 5, already present 1, invalid 0, refused 0" in ok(run("subscribers", "import", str(path)))
    assert schedule_of(store, "ada@example.com") == Schedule(WEEKLY, FRI)
    assert schedule_of(store, "alan@example.com") == Schedule(WEEKLY, SAT, dt.date(2030, 4, 1))
    assert schedule_of(store, "barbara@example.com") == Schedule(WEEKLY, None)  # the list's day
    assert schedule_of(store, "edsger@example.com") == Schedule(DAILY, None, dt.date(2030, 4, 1))
    assert schedule_of(store, "carl@example.com") == Schedule(DAILY)
    # An import never changes a reader already on the list.
    assert schedule_of(store, existing.email) == Schedule(DAILY)


def test_an_invalid_frequency_or_date_makes_its_line_invalid(store, run, tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(
        "email,frequency,paused_until\n"
        "ada@example.com,weekly:fri,\n"
        "bad1@example.com,monthly,\n"
        "bad2@example.com,weekly:someday,\n"
        "\n"
        "bad3@example.com,daily:fri,\n"
        "bad4@example.com,weekly,next week\n"
        "bad5@example.com,paused,2030-01-01\n"
        "not-an-address,monthly,\n"
        "alan@example.com,daily,\n",
        encoding="utf-8")
    result = run("subscribers", "import", str(path))
    assert "added 2, already present 0, invalid 6, refused 0" in ok(result)
    errors = result.stderr.splitlines()
    which = "is not a frequency (daily, weekly or weekly:<day>, such as weekly:fri)."
    assert errors[:5] == [
        f"{path}, line 3: frequency: “monthly” {which}",
        f"{path}, line 4: frequency: “weekly:someday” {which}",
        f"{path}, line 6: frequency: “daily:fri” {which}",
        f"{path}, line 7: paused_until: “next week” is not a date (YYYY-MM-DD).",
        f"{path}, line 8: frequency: “paused” {which}",
    ]
    assert errors[5].startswith(f"{path}, line 9: ") and "not-an-address" in errors[5]  # the address first
    assert [s.email for s in store.iter_subscribers()] == ["ada@example.com", "alan@example.com"]
    assert schedule_of(store, "ada@example.com") == Schedule(WEEKLY, FRI)


def test_export_then_import_keeps_every_readers_schedule(store, run, tmp_path):
    until = today_of(store) + dt.timedelta(days=5)
    schedules = {"ada@example.com": Schedule(DAILY), "alan@example.com": Schedule(WEEKLY),
                 "grace@example.com": Schedule(WEEKLY, SAT), "edsger@example.com": Schedule(DAILY, None, until),
                 "barbara@example.com": Schedule(WEEKLY, MON, until)}
    for address, schedule in schedules.items():
        reader, _ = store.add(address)
        store.set_schedule(reader.id, schedule)
    exported = ok(run("subscribers", "export"))
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["email"], r["frequency"], r["paused_until"]) for r in rows] == [
        ("ada@example.com", "daily", ""), ("alan@example.com", "weekly", ""), ("grace@example.com", "weekly:sat", ""),
        ("edsger@example.com", "daily", until.isoformat()), ("barbara@example.com", "weekly:mon", until.isoformat())]
    path = tmp_path / "export.csv"
    path.write_text(exported, encoding="utf-8")
    other = f"sqlite:///{tmp_path / 'other' / 'newsletter.db'}"
    result = CliRunner().invoke(cli, ["subscribers", "import", str(path)], env={"NEWSLETTER_DATABASE_URL": other},
                                catch_exceptions=False)
    assert "added 5, already present 0, invalid 0, refused 0" in ok(result)
    imported = open_store(other)
    try:
        assert {s.email: s.schedule for s in imported.iter_subscribers()} == schedules
    finally:
        imported.close()


def test_a_list_without_the_columns_reads_the_default_schedule(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,name\nada@example.com,Ada\n", encoding="utf-8")
    assert read_subscriber_csv(path, with_profiles=True) == [(2, "ada@example.com", "Ada", (), (), None)]
    path.write_text("email,paused_until\nada@example.com,2030-01-02\n", encoding="utf-8")
    [row] = read_subscriber_csv(path, with_profiles=True)
    assert row[5] == parse_schedule_cells("", "2030-01-02")
    assert row[5].values == (Schedule(DAILY, None, dt.date(2030, 1, 2)),)


def test_the_export_writes_schedules_as_the_import_reads_them():
    readers = [Schedule(DAILY), Schedule(WEEKLY), Schedule(WEEKLY, SAT), Schedule(WEEKLY, None, dt.date(2030, 1, 2))]
    stamp = dt.datetime(2025, 3, 11, tzinfo=dt.timezone.utc)
    out = io.StringIO()
    write_subscriber_csv([Subscriber(n, f"r{n}", f"r{n}@example.com", None, "active", "cli", stamp, stamp, schedule)
                          for n, schedule in enumerate(readers)], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [parse_schedule_cells(r["frequency"], r["paused_until"]).values[0] for r in rows] == readers
