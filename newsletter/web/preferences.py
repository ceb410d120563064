"""A reader's preferences page: ``GET /p/<token>`` shows what they told us
(interests, followed authors, arXiv categories, seed papers, the number of
picks, the phrases they never want papers about and where those hide papers,
how their email shows the rest of the day, and how often: daily, weekly on a
day, or paused until a date) as a form, and the papers they rated; it changes
nothing.
``POST /p/<token>`` saves the form, ``POST /p/<token>/undo`` removes one
vote, ``POST /p/<token>/forget`` forgets every vote ("What shapes your
picks": the words and papers that weigh most, from the reader's model of
their votes) and ``POST /p/<token>/forget/undo`` brings them back, through
the reader-action inbox (``newsletter.readers.actions``). As for
unsubscribing, the signed token is the proof: no cookie or session.
Beyond the limits on a reader's changes, a save or an undo gets the 429
page of :func:`slow_down`."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, request

from newsletter.core.errors import RateLimited, TokenError
from newsletter.picks import reader_model
from newsletter.picks.interests import (
    MAX_AUTHORS,
    MAX_CATEGORIES,
    MAX_INTERESTS,
    MAX_MUTED,
    MAX_SEEDS,
    PARSERS,
    SCHEDULE_CHOICES,
    choose_schedule,
    parse_day_of_week,
    parse_muting,
    parse_pause_end,
    parse_rest,
)
from newsletter.core.models import (
    MAX_PICKS,
    WEEKDAY_NAMES,
    WEEKDAYS,
    Frequency,
    Muting,
    Profile,
    RestOfDay,
    Schedule,
    Subscriber,
    SubscriberStatus,
)
from newsletter.web.app import client_address, invalid_link, mask_email, page, slow_down, state

blueprint = Blueprint("preferences", __name__)
blueprint.register_error_handler(RateLimited, slow_down)

# The newest votes the page lists (with an undo button each).
MAX_SHOWN_VOTES = 100
# How much of each field a form with an error shows back as it was typed.
MAX_SHOWN_CHARS = 5000
# The choices of "The rest of the day", as the page words them.
REST_LABELS = {RestOfDay.TITLES: "Every title (a compact list of links)",
               RestOfDay.COUNT: "Just the top (one line linking the web edition)"}
# The choices of where muted phrases hide papers, as the page words them.
MUTING_LABELS = {Muting.PICKS: "From my picks only",
                 Muting.TOP: "From my picks and from the top of the day (or of the week)"}
# Sent back by the undo buttons: what a paper key can be at most.
MAX_KEY_CHARS = 220


def reader(token: str) -> Subscriber | None:
    """The reader of a preferences token, or None for any bad token or
    unknown reference (the same answer: see :func:`invalid_link`)."""
    app = state()
    try:
        return app.store.get(ref=app.signer.preferences_ref(token))
    except TokenError:
        return None


def form_values(profile: Profile) -> dict[str, str]:
    """The form's fields filled with ``profile``, as a reader would type them."""
    return {"interests": "\n".join(profile.interests), "authors": "\n".join(profile.authors),
            "categories": ", ".join(profile.categories), "seeds": "\n".join(profile.seeds),
            "picks": str(profile.picks), "rest": str(profile.rest), "muted": "\n".join(profile.muted),
            "muting": str(profile.muting)}


def schedule_values(schedule: Schedule, today: dt.date) -> dict[str, str]:
    """The "How often" fields filled with ``schedule`` as it stands
    ``today``: the choice, the day (the list's when they chose none) and
    the end of a pause."""
    current = schedule.as_of(today)
    weekday = state().settings.weekly_weekday if current.weekday is None else current.weekday
    return {"frequency": "paused" if current.paused_until else str(current.frequency), "weekday": WEEKDAYS[weekday],
            "paused_until": current.paused_until.isoformat() if current.paused_until else ""}


def read_schedule(current: Schedule, today: dt.date) -> tuple[Schedule, dict[str, str]]:
    """The schedule the form chooses for a reader on ``current``, and the
    errors of its fields (then the schedule is ``current``). A form
    without the choice (a page from before it) leaves the schedule as it
    is."""
    choice = request.form.get("frequency")
    if choice is None:
        return current, {}
    if choice not in SCHEDULE_CHOICES:
        return current, {"frequency": "Choose daily, weekly or a pause."}
    errors, weekday, paused_until = {}, None, None
    # The day counts for a weekly reader, or one who becomes weekly (a pause keeps the frequency).
    if choice == "weekly" or (choice == "paused" and current.frequency == Frequency.WEEKLY):
        found = parse_day_of_week(request.form.get("weekday", ""))
        if found.error:
            errors["weekday"] = found.error
        else:
            weekday = found.values[0]
            # The form always sends a day: the one it showed keeps what is
            # stored, so a reader on the list's day stays on it (None).
            if weekday == (state().settings.weekly_weekday if current.weekday is None else current.weekday):
                weekday = current.weekday
    if choice == "paused":
        found = parse_pause_end(request.form.get("paused_until", ""), today)
        if found.error:
            errors["paused_until"] = found.error
        else:
            paused_until = found.values[0]
    if errors:
        return current, errors
    return choose_schedule(current, choice, weekday, paused_until), {}


def read_choice(name: str, current, parse):
    """The choice the form's radio buttons ``name`` make (read by
    ``parse``, such as ``parse_rest``) for a reader whose choice is
    ``current``, and the error of the field (then it is ``current``), as
    (choice, errors). A form without the choice (a page from before it)
    leaves it as it is."""
    typed = request.form.get(name)
    if typed is None:
        return current, {}
    found = parse(typed[:MAX_SHOWN_CHARS])
    return (current, {name: found.error}) if found.error else (found.values[0], {})


def paper_link(key: str) -> str | None:
    """The arXiv page of the paper ``key`` (None for a paper without an id)."""
    return None if key.startswith("title:") else f"https://arxiv.org/abs/{key}"


def preferences_page(token: str, subscriber: Subscriber, *, values: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None, notes: dict[str, tuple[str, ...]] | None = None,
                     notice: str = "", code: int = 200) -> Response:
    """The page for ``subscriber``: the form with ``values`` (default: their
    profile and schedule), ``errors`` and ``notes`` next to their fields, a
    ``notice`` line ("saved", "undone") and the papers they rated. A reader
    who is not active is told first that they get no email, with the
    Resubscribe button when they unsubscribed themself (as on the
    unsubscribe page)."""
    app = state()
    status = app.store.pending_status(subscriber.id) or subscriber.status
    unsubscribed = status == SubscriberStatus.UNSUBSCRIBED
    may_resubscribe = unsubscribed and app.store.signup_state(subscriber.email)[1]
    profile = app.actions.profile_of(subscriber.id)
    today = app.store.clock().date()
    schedule = app.actions.schedule_of(subscriber).as_of(today)
    votes = app.actions.votes_of(subscriber.id)
    titles = app.store.papers(profile.seeds) if profile.seeds and not errors else {}
    return page(
        "web/preferences.html", code, heading="Your preferences", masked=mask_email(subscriber.email),
        action=f"/p/{token}", values=values or {**form_values(profile), **schedule_values(schedule, today)},
        errors=errors or {}, notes=notes or {}, notice=notice, picks_off=profile.picks == 0, max_picks=MAX_PICKS,
        receiving=status == SubscriberStatus.ACTIVE, unsubscribed=unsubscribed,
        resubscribe=f"/u/{app.signer.unsubscribe_token(subscriber.ref)}/resubscribe" if may_resubscribe else "",
        schedule_now=schedule.describe(app.settings.weekly_weekday),
        weekdays=list(zip(WEEKDAYS, WEEKDAY_NAMES)), tomorrow=(today + dt.timedelta(days=1)).isoformat(),
        rest_choices=[(str(choice), REST_LABELS[choice]) for choice in RestOfDay],
        muting_choices=[(str(choice), MUTING_LABELS[choice]) for choice in Muting],
        limits={"interests": MAX_INTERESTS, "authors": MAX_AUTHORS, "categories": MAX_CATEGORIES,
                "seeds": MAX_SEEDS, "muted": MAX_MUTED},
        seeds=[] if errors else [(key, titles[key].title if key in titles else None) for key in profile.seeds],
        votes=[{"key": v.paper_key, "up": v.vote > 0, "title": v.title or v.paper_key, "link": paper_link(v.paper_key)}
               for v in votes[:MAX_SHOWN_VOTES]],
        more_votes=max(0, len(votes) - MAX_SHOWN_VOTES),
        shaping=reader_model.shaping(app.store, subscriber.id) if votes else None,
        forgotten=None if votes else app.store.forgotten(subscriber.id),
    )


@blueprint.get("/p/<token>")
def preferences_form(token: str) -> Response:
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    return preferences_page(token, subscriber)


@blueprint.post("/p/<token>")
def save(token: str) -> Response:
    """Save the form, all or nothing: with an error in any field nothing is
    saved, and the form comes back as typed with the error beside it."""
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    app = state()
    today = app.store.clock().date()
    current = app.actions.schedule_of(subscriber)
    typed = {name: request.form.get(name, "") for name in PARSERS}
    parsed = {name: parse(typed[name]) for name, parse in PARSERS.items()}
    errors = {name: found.error for name, found in parsed.items() if found.error}
    schedule, schedule_errors = read_schedule(current, today)
    errors.update(schedule_errors)
    stored = app.actions.profile_of(subscriber.id)
    rest, rest_errors = read_choice("rest", stored.rest, parse_rest)
    muting, muting_errors = read_choice("muting", stored.muting, parse_muting)
    errors.update(rest_errors, **muting_errors)
    if errors:
        shown = {name: value[:MAX_SHOWN_CHARS] for name, value in typed.items()}
        # The "How often" fields as chosen (short: a choice, a day, a date), else as stored.
        shown.update({name: request.form.get(name, value)[:20]
                      for name, value in schedule_values(current, today).items()})
        shown["rest"] = request.form.get("rest", str(stored.rest))[:20]
        shown["muting"] = request.form.get("muting", str(stored.muting))[:20]
        return preferences_page(token, subscriber, values=shown, errors=errors, code=400)
    profile = Profile(subscriber.id, interests=parsed["interests"].values, authors=parsed["authors"].values,
                      categories=parsed["categories"].values, seeds=parsed["seeds"].values,
                      picks=parsed["picks"].values[0], rest=rest, muted=parsed["muted"].values, muting=muting)
    app.actions.save_preferences(subscriber, profile, schedule if schedule != current else None, client_address())
    notes = {name: found.notes for name, found in parsed.items() if found.notes}
    return preferences_page(token, subscriber, values={**form_values(profile), **schedule_values(schedule, today)},
                            notes=notes, notice="saved")


@blueprint.post("/p/<token>/undo")
def undo(token: str) -> Response:
    """Remove the reader's vote on the paper the button names (a paper they
    did not rate changes nothing)."""
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    key = request.form.get("paper", "")[:MAX_KEY_CHARS]
    rated = {vote.paper_key: vote for vote in state().actions.votes_of(subscriber.id)}
    if key not in rated:
        return preferences_page(token, subscriber)
    state().actions.vote(subscriber, key, 0, rated[key].edition, client_address())
    return preferences_page(token, subscriber, notice="undone")


@blueprint.post("/p/<token>/forget")
def forget(token: str) -> Response:
    """Forget every vote of the reader (kept for an undo; see
    ``ReaderActions.forget_votes``)."""
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    state().actions.forget_votes(subscriber, client=client_address())
    return preferences_page(token, subscriber, notice="forgotten")


@blueprint.post("/p/<token>/forget/undo")
def unforget(token: str) -> Response:
    """Bring back the votes the reader asked us to forget."""
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    state().actions.forget_votes(subscriber, undo=True, client=client_address())
    return preferences_page(token, subscriber, notice="restored")
