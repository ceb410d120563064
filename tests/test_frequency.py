"""How often each reader gets the newsletter (daily, weekly on a day, or
paused until a date), wherever it is set: ``newsletter subscribers
interests``, the CSV import and export, the preferences page and the
sign-up form; stored on both databases (the ``store`` fixture: SQLite, then
PostgreSQL) and honoured by the send ledger.

A pause is not a frequency: it keeps the one the reader resumes, and
choosing daily or weekly ends it.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import io
import re

import lxml.html
import pytest
from itsdangerous import URLSafeTimedSerializer

from conftest import SECRET, count_signups, ok
from newsletter.core.errors import TokenError
from newsletter.picks.interests import choose_schedule, parse_schedule_cells
from newsletter.readers.lists import read_subscriber_csv, write_subscriber_csv
from newsletter.core.models import Edition, EditionKind, Frequency, Profile, Schedule, Subscriber, SubscriberRow
from newsletter.store import Ledger, open_store
from newsletter.readers.tokens import CONFIRM_SALT, Signer

DAILY, WEEKLY = Frequency.DAILY, Frequency.WEEKLY
MON, THU, FRI, SAT = 0, 3, 4, 5
FORM = {"interests": "concept erasure", "authors": "", "categories": "", "seeds": "", "picks": "5"}
CONFIRM_LINK = re.compile(r"https://papers\.example\.org/confirm/([A-Za-z0-9_\-.]+)")


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


def frequency_line(out: str) -> str:
    [line] = [line for line in out.splitlines() if line.startswith("  frequency:")]
    return line.removeprefix("  frequency:").strip()


def test_the_operator_sets_each_frequency_and_sees_it_in_words(store, cli_run):
    reader, _ = store.add("ada@example.com")
    assert frequency_line(ok(cli_run("subscribers", "interests", "ada@example.com"))) == "daily"
    # Weekly on the list's day, whatever it is.
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--frequency", "weekly"))
    assert frequency_line(out) == "weekly on Monday"
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, None)
    out = ok(cli_run("subscribers", "interests", "ada@example.com", NEWSLETTER_WEEKLY_DAY="thu"))
    assert frequency_line(out) == "weekly on Thursday"
    # A weekly reader's day alone.
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--weekday", "Friday"))
    assert frequency_line(out) == "weekly on Friday" and schedule_of(store, reader.email) == Schedule(WEEKLY, FRI)
    # A pause keeps the frequency and day they resume.
    until = today_of(store) + dt.timedelta(days=12)
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--frequency", "paused",
                     "--until", until.isoformat()))
    assert frequency_line(out) == f"paused until {until}, then weekly on Friday"
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, FRI, until)
    # Daily ends the pause and forgets the day; weekly again is on the list's day.
    assert frequency_line(ok(cli_run("subscribers", "interests", "ada@example.com", "--frequency", "daily"))) == "daily"
    assert schedule_of(store, reader.email) == Schedule(DAILY)
    ok(cli_run("subscribers", "interests", "ada@example.com", "--frequency", "WEEKLY", "--weekday", "sat"))
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, SAT)
    # With other options: both saved, the profile's other parts kept.
    out = ok(cli_run("subscribers", "interests", "ada@example.com", "--keywords", "graphs", "--frequency", "daily"))
    assert "  interests:   graphs" in out and frequency_line(out) == "daily"
    assert store.profile(reader.id).interests == ("graphs",) and schedule_of(store, reader.email) == Schedule(DAILY)
    # The other options change no schedule.
    store.set_schedule(reader.id, Schedule(WEEKLY, FRI, until))
    ok(cli_run("subscribers", "interests", "ada@example.com", "--picks", "3"))
    assert schedule_of(store, reader.email) == Schedule(WEEKLY, FRI, until)


def test_a_pause_that_ended_is_shown_as_the_frequency_it_resumed(store, cli_run):
    reader, _ = store.add("ada@example.com")
    store.set_schedule(reader.id, Schedule(WEEKLY, FRI, today_of(store)))
    assert frequency_line(ok(cli_run("subscribers", "interests", "ada@example.com"))) == "weekly on Friday"


@pytest.mark.parametrize("args, message", [
    (("--frequency", "paused"), "--frequency paused needs --until YYYY-MM-DD"),
    (("--until", "2099-01-01"), "--until goes with --frequency paused"),
    (("--frequency", "weekly", "--until", "2099-01-01"), "--until goes with --frequency paused"),
    (("--frequency", "daily", "--weekday", "fri"), "--weekday goes with --frequency weekly"),
    (("--weekday", "fri"), "--weekday goes with --frequency weekly (ada@example.com is not weekly)"),
    (("--frequency", "paused", "--until", "2099-01-01", "--weekday", "fri"), "ada@example.com is not weekly"),
    (("--frequency", "monthly"), "Invalid value for '--frequency'"),
])
def test_options_that_do_not_go_together_are_usage_errors(store, cli_run, args, message):
    reader, _ = store.add("ada@example.com")
    result = cli_run("subscribers", "interests", "ada@example.com", "--keywords", "changed", *args)
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
def test_malformed_days_and_dates_are_refused_naming_the_option(store, cli_run, args, message):
    reader, _ = store.add("ada@example.com")
    store.set_schedule(reader.id, Schedule(WEEKLY, SAT))
    result = cli_run("subscribers", "interests", "ada@example.com", "--keywords", "changed", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output and result.stdout == ""
    error = result.stderr.strip()
    assert error.startswith("Error: ") and "\n" not in error and message in error, error
    assert (schedule_of(store, reader.email), store.profile(reader.id)) == (Schedule(WEEKLY, SAT), Profile(reader.id))


def test_a_pause_must_end_after_today(store, cli_run):
    reader, _ = store.add("ada@example.com")
    today = today_of(store)
    result = cli_run("subscribers", "interests", "ada@example.com", "--frequency", "paused",
                     "--until", today.isoformat())
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: --until: {today} is today: a pause ends on a day after today ({today})."
    tomorrow = today + dt.timedelta(days=1)
    ok(cli_run("subscribers", "interests", "ada@example.com", "--frequency", "paused", "--until", tomorrow.isoformat()))
    assert schedule_of(store, reader.email) == Schedule(DAILY, None, tomorrow)


def test_every_new_option_has_help(database_url, cli_run):
    out = ok(cli_run("subscribers", "interests", "--help"))
    for option in ("--frequency [daily|weekly|paused]", "--weekday mon…sun", "--until YYYY-MM-DD"):
        assert option in out, out
    assert "NEWSLETTER_WEEKLY_DAY" in out and "after today" in out


# --------------------------------------------------------------------------
# CSV import and export


def test_the_import_reads_the_frequency_and_paused_until_columns(store, cli_run, tmp_path):
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
    assert "added 5, already present 1, invalid 0, refused 0" in ok(cli_run("subscribers", "import", str(path)))
    assert schedule_of(store, "ada@example.com") == Schedule(WEEKLY, FRI)
    assert schedule_of(store, "alan@example.com") == Schedule(WEEKLY, SAT, dt.date(2030, 4, 1))
    assert schedule_of(store, "barbara@example.com") == Schedule(WEEKLY, None)  # the list's day
    assert schedule_of(store, "edsger@example.com") == Schedule(DAILY, None, dt.date(2030, 4, 1))
    assert schedule_of(store, "carl@example.com") == Schedule(DAILY)
    # An import never changes a reader already on the list.
    assert schedule_of(store, existing.email) == Schedule(DAILY)


def test_an_invalid_frequency_or_date_makes_its_line_invalid(store, cli_run, tmp_path):
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
    result = cli_run("subscribers", "import", str(path))
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


def test_export_then_import_keeps_every_readers_schedule(store, cli_run, tmp_path):
    until = today_of(store) + dt.timedelta(days=5)
    schedules = {"ada@example.com": Schedule(DAILY), "alan@example.com": Schedule(WEEKLY),
                 "grace@example.com": Schedule(WEEKLY, SAT), "edsger@example.com": Schedule(DAILY, None, until),
                 "barbara@example.com": Schedule(WEEKLY, MON, until)}
    for address, schedule in schedules.items():
        reader, _ = store.add(address)
        store.set_schedule(reader.id, schedule)
    exported = ok(cli_run("subscribers", "export"))
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["email"], r["frequency"], r["paused_until"]) for r in rows] == [
        ("ada@example.com", "daily", ""), ("alan@example.com", "weekly", ""), ("grace@example.com", "weekly:sat", ""),
        ("edsger@example.com", "daily", until.isoformat()), ("barbara@example.com", "weekly:mon", until.isoformat())]
    path = tmp_path / "export.csv"
    path.write_text(exported, encoding="utf-8")
    other = f"sqlite:///{tmp_path / 'other' / 'newsletter.db'}"
    result = cli_run("subscribers", "import", str(path), NEWSLETTER_DATABASE_URL=other)
    assert "added 5, already present 0, invalid 0, refused 0" in ok(result)
    imported = open_store(other)
    try:
        assert {s.email: s.schedule for s in imported.iter_subscribers()} == schedules
    finally:
        imported.close()


def test_a_list_without_the_columns_reads_the_default_schedule(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("email,name\nada@example.com,Ada\n", encoding="utf-8")
    assert read_subscriber_csv(path, with_profiles=True) == [SubscriberRow(2, "ada@example.com", "Ada")]
    path.write_text("email,paused_until\nada@example.com,2030-01-02\n", encoding="utf-8")
    [row] = read_subscriber_csv(path, with_profiles=True)
    assert (row.schedule, row.schedule_error) == (parse_schedule_cells("", "2030-01-02").values[0], None)
    assert row.schedule == Schedule(DAILY, None, dt.date(2030, 1, 2))


def test_the_export_writes_schedules_as_the_import_reads_them():
    readers = [Schedule(DAILY), Schedule(WEEKLY), Schedule(WEEKLY, SAT), Schedule(WEEKLY, None, dt.date(2030, 1, 2))]
    stamp = dt.datetime(2025, 3, 11, tzinfo=dt.timezone.utc)
    out = io.StringIO()
    write_subscriber_csv([Subscriber(n, f"r{n}", f"r{n}@example.com", None, "active", "cli", stamp, stamp, schedule)
                          for n, schedule in enumerate(readers)], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [parse_schedule_cells(r["frequency"], r["paused_until"]).values[0] for r in rows] == readers


# --------------------------------------------------------------------------
# the preferences page


@pytest.fixture
def site(store, web_client):
    """Two readers and a function making a test client of the app."""
    alice, _ = store.add("alice@example.com", "Alice")
    bob, _ = store.add("bob@example.org", "Bob")

    def client(**overrides):
        return web_client(**{"base_url": "https://papers.example.org", **overrides})

    return store, alice, bob, client


def path_of(reader) -> str:
    return f"/p/{Signer(SECRET).preferences_token(reader.ref)}"


def html_of(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def chosen(response) -> dict[str, str]:
    """The "How often" fields as the page shows them: the checked choice,
    the selected day, the date, and the line saying what it is now."""
    page = html_of(response)
    [checked] = page.cssselect("input[name=frequency][checked]")
    [day] = page.cssselect("#weekday option[selected]")
    return {"frequency": checked.get("value"), "weekday": day.get("value"),
            "paused_until": page.get_element_by_id("paused_until").get("value"),
            "now": page.get_element_by_id("frequency-hint").text_content()}


def test_the_page_shows_how_often_in_an_accessible_fieldset(site):
    store, alice, _bob, client = site
    response = client(weekly_day="thu").get(path_of(alice))
    assert chosen(response) == {"frequency": "daily", "weekday": "thu", "paused_until": "", "now": "Now: daily."}
    page = html_of(response)
    [fieldset] = page.cssselect("fieldset:has(input[name=frequency])")
    assert fieldset.cssselect("legend")[0].text_content() == "How often"
    assert fieldset.get("aria-describedby") == "frequency-hint frequency-about"
    for value in ("daily", "weekly", "paused"):
        radio = page.get_element_by_id(f"frequency-{value}")
        assert radio.get("type") == "radio" and page.cssselect(f"label[for=frequency-{value}]")
    assert page.get_element_by_id("weekday").get("aria-label") and page.get_element_by_id("paused_until").get(
        "aria-label")
    tomorrow = today_of(store) + dt.timedelta(days=1)
    assert page.get_element_by_id("paused_until").get("min") == tomorrow.isoformat()
    assert [o.text_content() for o in page.cssselect("#weekday option")][:2] == ["Monday", "Tuesday"]
    # A weekly reader on the list's day, then on a day of their own, then paused.
    store.set_schedule(alice.id, Schedule(WEEKLY))
    assert chosen(client(weekly_day="thu").get(path_of(alice)))["now"] == "Now: weekly on Thursday."
    until = today_of(store) + dt.timedelta(days=3)
    store.set_schedule(alice.id, Schedule(WEEKLY, SAT, until))
    assert chosen(client().get(path_of(alice))) == {
        "frequency": "paused", "weekday": "sat", "paused_until": until.isoformat(),
        "now": f"Now: paused until {until}, then weekly on Saturday."}
    # Once the pause is over, the page shows what they got back to.
    store.set_schedule(alice.id, Schedule(WEEKLY, SAT, today_of(store)))
    assert chosen(client().get(path_of(alice)))["frequency"] == "weekly"


def test_choosing_weekly_on_a_day_then_a_pause_then_daily(site):
    store, alice, bob, client = site
    app = client()
    response = app.post(path_of(alice), data={**FORM, "frequency": "weekly", "weekday": "fri", "paused_until": ""})
    assert response.status_code == 200
    assert html_of(response).cssselect("[role=status]")[0].text_content().startswith("Saved.")
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, FRI)
    assert store.profile(alice.id).interests == ("concept erasure",)  # the same POST saves both
    assert chosen(response) == {"frequency": "weekly", "weekday": "fri", "paused_until": "",
                                "now": "Now: weekly on Friday."}
    until = today_of(store) + dt.timedelta(days=20)
    response = app.post(path_of(alice), data={**FORM, "frequency": "paused", "weekday": "fri",
                                              "paused_until": until.isoformat()})
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, FRI, until)
    assert chosen(response)["now"] == f"Now: paused until {until}, then weekly on Friday."
    response = app.post(path_of(alice), data={**FORM, "frequency": "daily", "weekday": "fri",
                                              "paused_until": until.isoformat()})
    assert schedule_of(store, alice.email) == Schedule(DAILY)
    assert chosen(response) == {"frequency": "daily", "weekday": "mon", "paused_until": "", "now": "Now: daily."}
    assert schedule_of(store, bob.email) == Schedule(DAILY)


def test_the_day_the_page_showed_keeps_a_reader_on_the_lists_day(site):
    store, alice, _bob, client = site
    # Weekly with the day shown (the list's): they follow the list's day.
    client(weekly_day="thu").post(path_of(alice), data={**FORM, "frequency": "weekly", "weekday": "thu"})
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, None)
    client(weekly_day="thu").post(path_of(alice), data={**FORM, "frequency": "weekly", "weekday": "thu"})
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, None)
    # Another day is theirs.
    client(weekly_day="thu").post(path_of(alice), data={**FORM, "frequency": "weekly", "weekday": "mon"})
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, MON)


def test_a_form_without_the_choice_leaves_the_schedule_as_it_is(site):
    store, alice, _bob, client = site
    until = today_of(store) + dt.timedelta(days=4)
    store.set_schedule(alice.id, Schedule(WEEKLY, FRI, until))
    assert client().post(path_of(alice), data=FORM).status_code == 200
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, FRI, until)
    assert store.profile(alice.id).interests == ("concept erasure",)


@pytest.mark.parametrize("choice, field, message", [
    ({"frequency": "paused", "paused_until": ""}, "paused_until", "A pause needs the day it ends (YYYY-MM-DD)."),
    ({"frequency": "paused", "paused_until": "2020-01-01"}, "paused_until", "2020-01-01 is in the past"),
    ({"frequency": "paused", "paused_until": "01/02/2099"}, "paused_until", "“01/02/2099” is not a date"),
    ({"frequency": "weekly", "weekday": "someday"}, "weekday", "“someday” is not a day of the week"),
    ({"frequency": "monthly"}, "frequency", "Choose daily, weekly or a pause."),
])
def test_a_wrong_choice_saves_nothing_and_shows_the_error_and_the_form_as_chosen(site, choice, field, message):
    store, alice, _bob, client = site
    store.set_schedule(alice.id, Schedule(WEEKLY, SAT))
    response = client().post(path_of(alice), data={**FORM, "weekday": "sat", **choice})
    assert response.status_code == 400
    page = html_of(response)
    assert "Nothing was saved" in page.cssselect("[role=alert]")[0].text_content()
    assert message in page.get_element_by_id("frequency-error").text_content()
    assert "frequency-error" in page.cssselect("fieldset:has(input[name=frequency])")[0].get("aria-describedby")
    if field != "frequency":
        assert page.get_element_by_id(field).get("aria-invalid") == "true"
        assert page.cssselect("input[name=frequency][checked]")[0].get("value") == choice["frequency"]
    assert page.get_element_by_id("paused_until").get("value") == choice.get("paused_until", "")
    # Nothing of the form is saved, the interests neither.
    assert (schedule_of(store, alice.email), store.profile(alice.id)) == (Schedule(WEEKLY, SAT), Profile(alice.id))


def test_a_pause_ending_today_is_refused_and_tomorrow_is_not(site):
    store, alice, _bob, client = site
    today = today_of(store)
    response = client().post(path_of(alice), data={**FORM, "frequency": "paused", "paused_until": today.isoformat()})
    assert response.status_code == 400
    assert f"{today} is today" in html_of(response).get_element_by_id("frequency-error").text_content()
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    assert client().post(path_of(alice), data={**FORM, "frequency": "paused", "paused_until": tomorrow}).status_code \
        == 200
    assert schedule_of(store, alice.email) == Schedule(DAILY, None, dt.date.fromisoformat(tomorrow))


# --------------------------------------------------------------------------
# sign-up


def confirmation_token(outbox) -> str:
    [path] = sorted((outbox / "single").glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return CONFIRM_LINK.search(message.get_body(("plain",)).get_content()).group(1)


def test_a_weekly_sign_up_survives_the_confirmation_and_the_reader_is_weekly(site, tmp_path):
    store, _alice, _bob, client = site
    app = client(weekly_day="fri")
    page = html_of(app.get("/subscribe"))
    assert "on Fridays" in page.cssselect("label[for=frequency-weekly]")[0].text_content()
    response = app.post("/subscribe", data={"email": "weekly.reader@example.com", "frequency": "weekly",
                                            "interests": "graphs"})
    assert response.status_code == 200 and "Check your inbox" in response.get_data(as_text=True)
    app.application.extensions["newsletter"].actions.run_pending()
    token = confirmation_token(tmp_path / "outbox")
    assert Signer(SECRET).confirmed(token, 3600) == ("weekly.reader@example.com", None, ("graphs",), WEEKLY)
    confirm_page = html_of(app.get(f"/confirm/{token}"))
    assert "weekly" in confirm_page.get_element_by_id("frequency").text_content()
    assert store.get(email="weekly.reader@example.com") is None  # a GET changes nothing
    done = app.post(f"/confirm/{token}")
    assert "Your first weekly issue arrives on Friday." in done.get_data(as_text=True)
    reader = store.get(email="weekly.reader@example.com")
    assert reader.schedule == Schedule(WEEKLY, None)  # on the list's day
    assert store.profile(reader.id).interests == ("graphs",)


def test_a_daily_sign_up_carries_no_frequency_and_makes_a_daily_reader(site, tmp_path):
    store, _alice, _bob, client = site
    app = client()
    app.post("/subscribe", data={"email": "daily.reader@example.com"})  # a form with no choice: daily
    app.application.extensions["newsletter"].actions.run_pending()
    token = confirmation_token(tmp_path / "outbox")
    payload = URLSafeTimedSerializer(SECRET, salt=CONFIRM_SALT).loads(token)
    assert payload == {"e": "daily.reader@example.com", "n": ""}  # as short as before frequencies
    assert not html_of(app.get(f"/confirm/{token}")).cssselect("#frequency")
    app.post(f"/confirm/{token}")
    assert schedule_of(store, "daily.reader@example.com") == Schedule(DAILY)


def test_a_sign_up_with_an_unknown_frequency_records_nothing(site, tmp_path):
    store, _alice, _bob, client = site
    app = client()
    response = app.post("/subscribe", data={"email": "x@example.com", "name": "X", "frequency": "hourly"})
    assert response.status_code == 400
    page = html_of(response)
    assert page.cssselect("[role=alert]")[0].text_content() == "Please choose daily or weekly."
    assert page.get_element_by_id("email").get("value") == "x@example.com"
    assert count_signups(store, email="x@example.com", since=store.clock() - dt.timedelta(hours=1)) == 0


def test_a_returning_reader_keeps_their_schedule(site):
    store, alice, _bob, client = site
    store.set_schedule(alice.id, Schedule(WEEKLY, SAT))
    store.change_status(alice.id, "unsubscribed", source="web", reason="left")
    token = Signer(SECRET).confirm_token(alice.email, None, (), DAILY)
    assert client().post(f"/confirm/{token}").status_code == 200
    assert store.get(ref=alice.ref).status == "active"
    assert schedule_of(store, alice.email) == Schedule(WEEKLY, SAT)


def test_a_confirmation_link_with_a_frequency_that_is_none_is_refused():
    forged = URLSafeTimedSerializer(SECRET, salt=CONFIRM_SALT).dumps({"e": "x@example.com", "n": "", "f": "hourly"})
    with pytest.raises(TokenError):
        Signer(SECRET).confirmed(forged, 3600)


# --------------------------------------------------------------------------
# the ledger


def test_the_ledger_sends_each_edition_to_the_readers_who_chose_it(site, cli_run, tmp_path):
    """Schedules set by every surface: each edition goes to its readers,
    the daily one only to daily readers who are not paused."""
    store, alice, bob, client = site
    today = today_of(store)
    until = today + dt.timedelta(days=10)
    # The operator: carl weekly on Friday, dora paused (daily after).
    store.add("carl@example.com")
    store.add("dora@example.com")
    ok(cli_run("subscribers", "interests", "carl@example.com", "--frequency", "weekly", "--weekday", "fri"))
    ok(cli_run("subscribers", "interests", "dora@example.com", "--frequency", "paused", "--until", until.isoformat()))
    # A list: erin weekly on Saturday, fred daily.
    path = tmp_path / "list.csv"
    path.write_text("email,frequency\nerin@example.com,weekly:sat\nfred@example.com,daily\n", encoding="utf-8")
    ok(cli_run("subscribers", "import", str(path)))
    # The readers: alice weekly on the list's day (Monday) on her page, bob stays daily.
    app = client()
    app.post(path_of(alice), data={**FORM, "frequency": "weekly", "weekday": "mon"})
    # A sign-up, weekly.
    app.post("/subscribe", data={"email": "gina@example.com", "frequency": "weekly"})
    app.application.extensions["newsletter"].actions.run_pending()
    app.post(f"/confirm/{confirmation_token(tmp_path / 'outbox')}")

    def daily(day: dt.date) -> list[str]:
        return [s.email for s in Ledger(store, day).iter_unsent()]

    def weekly(day: dt.date) -> list[str]:
        return [s.email for s in Ledger(store, Edition(day, EditionKind.WEEKLY), MON).iter_unsent()]

    tomorrow = today + dt.timedelta(days=1)
    assert daily(tomorrow) == ["bob@example.org", "fred@example.com"]
    assert daily(until) == ["bob@example.org", "dora@example.com", "fred@example.com"]  # the pause is over
    next_day = {weekday: tomorrow + dt.timedelta(days=(weekday - tomorrow.weekday()) % 7) for weekday in range(7)}
    assert weekly(next_day[MON]) == ["alice@example.com", "gina@example.com"]
    assert weekly(next_day[FRI]) == ["carl@example.com"]
    assert weekly(next_day[SAT]) == ["erin@example.com"]
    assert weekly(next_day[THU]) == []
