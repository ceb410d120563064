"""Plain, immutable data passed between the layers, and the one vocabulary
of statuses: a subscriber's, a delivery's, a readiness check's, the kinds
of SES feedback, and the kinds and outcomes of readers' actions.

The statuses are string enums: their values are what the database stores,
and a member compares equal to its value.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from html import escape
from typing import NamedTuple
from urllib.parse import quote


class SubscriberStatus(StrEnum):
    """Where a reader stands; only ``ACTIVE`` readers are sent issues."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"  # by the reader, or removed by the operator
    BOUNCED = "bounced"  # suppressed: a permanent bounce, or repeated transient ones
    COMPLAINED = "complained"  # suppressed: marked as spam


class DeliveryStatus(StrEnum):
    """What became of one issue for one reader.

    The send ledger stores ``PENDING`` (the provider is being called),
    ``SENT`` (accepted, with the provider's message id), ``FAILED``
    (refused for good) and ``UNKNOWN`` (the answer was lost: never resent
    blindly). ``RETRY`` is a sender's answer only, never stored: not sent
    this time (throttled, a transient fault), try again.
    """

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    RETRY = "retry"


# The statuses a ledger row can have, in the order reports list them.
LEDGER_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN)


class EditionKind(StrEnum):
    """Which edition of a date: the day's papers, or the seven days ending
    on it."""

    DAILY = "daily"
    WEEKLY = "weekly"


class Frequency(StrEnum):
    """How often a reader wants the newsletter (a pause, until a date, is
    kept apart: see :class:`Schedule`)."""

    DAILY = "daily"
    WEEKLY = "weekly"


class CheckStatus(StrEnum):
    """The outcome of one readiness check of ``newsletter doctor``, from
    best to worst but ``SKIP`` (not checked: nothing to say)."""

    OK = "ok"
    WARN = "warn"  # a send goes out, but something should be fixed
    FAIL = "fail"  # a send would fail, or its mail be refused or junked
    SKIP = "skip"  # not checked: does not apply, or could not be looked at


class ReaderActionKind(StrEnum):
    """What a reader action recorded in the store's action inbox is (see
    ``newsletter.readers.actions``)."""

    UNSUBSCRIBE = "unsubscribe"
    RESUBSCRIBE = "resubscribe"
    CONFIRM = "confirm"  # a sign-up's confirmation link used
    PREFERENCES = "preferences"  # the preferences form saved
    VOTE = "vote"  # a 👍 or 👎 on a paper, or its undo
    FORGET_VOTES = "forget_votes"  # "Forget my votes", or its undo
    SIGNUP = "signup"  # a sign-up form: its confirmation email to send
    FETCH_PAPER = "fetch_paper"  # a seed paper to look up on arXiv


class ConfirmOutcome(StrEnum):
    """What a used confirmation link comes to."""

    SUBSCRIBED = "subscribed"  # a new reader
    RESUBSCRIBED = "resubscribed"  # a reader who had unsubscribed themself, active again
    ALREADY = "already"  # active already: nothing changes
    REFUSED = "refused"  # may not be made active from the web: removed by the operator, bounced or complained


class NotApplied(StrEnum):
    """Why a reader's action was not applied the moment it came."""

    WAITING = "waiting"  # recorded, and applied as soon as the database is free
    UNCHANGED = "unchanged"  # it would change nothing: not recorded


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as date.weekday() numbers them
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEK_DAYS = 7  # a weekly edition of D covers D-6 … D


def parse_weekday(value: str) -> int:
    """Return the weekday (0 Monday … 6 Sunday) named by ``value``: its
    first three letters or its English name, in any case ("mon",
    "Monday"). Raises ValueError for anything else."""
    name = value.strip().lower()
    if len(name) >= 3 and name[:3] in WEEKDAYS:
        number = WEEKDAYS.index(name[:3])
        if name in (WEEKDAYS[number], WEEKDAY_NAMES[number].lower()):
            return number
    raise ValueError(f"not a weekday: {value!r} (use mon, tue, wed, thu, fri, sat or sun)")


@dataclass(frozen=True, order=True)
class Edition:
    """One edition: the daily or weekly edition of ``date``. Its ``key`` is
    what the ledger, the stored issues, picks, feedback tokens and SES's
    ``X-Newsletter-Issue`` header call it: ``2026-03-15`` for a daily,
    ``2026-03-15-weekly`` for a weekly (keys sort by date, a daily first)."""

    date: dt.date
    kind: EditionKind = EditionKind.DAILY

    @property
    def key(self) -> str:
        """The edition's name in storage and links."""
        day = self.date.isoformat()
        return day if self.kind == EditionKind.DAILY else f"{day}-{self.kind}"

    @property
    def first_date(self) -> dt.date:
        """The first day whose papers the edition carries."""
        return self.date - dt.timedelta(days=WEEK_DAYS - 1) if self.kind == EditionKind.WEEKLY else self.date

    @property
    def days(self) -> list[dt.date]:
        """Every day whose papers the edition carries, oldest first."""
        return [self.first_date + dt.timedelta(days=n) for n in range((self.date - self.first_date).days + 1)]

    def describe(self) -> str:
        """The days the edition covers, in words: "Sun 15 Mar 2026" for a
        daily edition, "9–15 Mar 2026" for a weekly one (or "27 Feb – 5 Mar
        2026", "29 Dec 2025 – 4 Jan 2026" across a month or a year)."""
        first, last = self.first_date, self.date
        if self.kind == EditionKind.DAILY:
            return f"{last:%a} {last.day} {last:%b %Y}"
        if (first.year, first.month) == (last.year, last.month):
            return f"{first.day}–{last.day} {last:%b %Y}"
        if first.year == last.year:
            return f"{first.day} {first:%b} – {last.day} {last:%b %Y}"
        return f"{first.day} {first:%b %Y} – {last.day} {last:%b %Y}"

    @classmethod
    def parse(cls, key: str) -> "Edition":
        """Return the edition named ``key``. Raises ValueError for anything
        that is not an edition's key."""
        weekly = key.endswith("-weekly")
        day = key[:-len("-weekly")] if weekly else key
        if len(day) != 10:  # fromisoformat also takes 20260315
            raise ValueError(f"not an edition: {key!r}")
        return cls(dt.date.fromisoformat(day), EditionKind.WEEKLY if weekly else EditionKind.DAILY)


@dataclass(frozen=True)
class Schedule:
    """When a reader gets the newsletter: ``frequency``, the ``weekday``
    of a weekly reader (0 Monday … 6 Sunday; None: the list's default day),
    and a pause: no edition dated before ``paused_until``."""

    frequency: Frequency = Frequency.DAILY
    weekday: int | None = None
    paused_until: dt.date | None = None

    def describe(self, default_weekday: int) -> str:
        """The schedule in words: "daily", "weekly on Monday", "paused until
        2026-03-20, then daily"."""
        words = "daily"
        if self.frequency == Frequency.WEEKLY:
            weekday = default_weekday if self.weekday is None else self.weekday
            words = f"weekly on {WEEKDAY_NAMES[weekday]}"
        return f"paused until {self.paused_until}, then {words}" if self.paused_until else words

    def as_of(self, today: dt.date) -> "Schedule":
        """This schedule as it stands on ``today``: without its pause once
        the pause is over (a pause until ``today`` is over: today's
        edition is sent)."""
        if self.paused_until is not None and self.paused_until <= today:
            return Schedule(self.frequency, self.weekday)
        return self


class FeedbackKind(StrEnum):
    """What SES reported about one recipient."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    # SES accepted the message, then could not render its template for this
    # recipient and dropped it: the reader got nothing.
    RENDERING_FAILURE = "render_failure"


# The stored SES template of an edition is named this and the edition's key
# (see Edition.key); a Rendering Failure names the template, not the edition.
SES_TEMPLATE_PREFIX = "newsletter-"
# The start of the reason of a ledger row SES dropped with a Rendering
# Failure ("failed": ``send --resend-rendering-failures`` sends it again).
RENDERING_FAILURE_REASON = "Rendering Failure"

# Stand in for a reader's own values until an issue is personalized: their
# unsubscribe link, their preferences page, the reader part of their
# feedback tokens (see tokens.Signer.feedback_token), their picks and the
# email's preheader (their first pick's title, else the issue's). Only
# letters and underscores, so no compiler or inliner changes them.
UNSUBSCRIBE_URL_MARK = "__NEWSLETTER_UNSUBSCRIBE_URL__"
PREFERENCES_URL_MARK = "__NEWSLETTER_PREFERENCES_URL__"
FEEDBACK_MARK = "__NEWSLETTER_FEEDBACK__"
PICKS_MARK = "__NEWSLETTER_PICKS__"
PREHEADER_MARK = "__NEWSLETTER_PREHEADER__"
# Where a reader's first pick goes in a subject of the operator's template
# (NEWSLETTER_SUBJECT with {pick}): see Issue.personal_subject.
SUBJECT_PICK_MARK = "__NEWSLETTER_SUBJECT_PICK__"
PERSONAL_MARKS = (UNSUBSCRIBE_URL_MARK, PREFERENCES_URL_MARK, FEEDBACK_MARK, PICKS_MARK, PREHEADER_MARK)

# The parts of a reader's copy that show or not, reader by reader, lie
# between XNLBEGIN<name>X and XNLEND<name>X (see email.mjml: "K<n>", paper
# n's top card; "L<n>", paper n in the list of titles; "ALL", the list;
# "ONE", the line that stands for it). Capital letters and digits only, so
# no compiler, inliner or encoder changes them.
SPAN_MARKS = re.compile(r"XNL(?:BEGIN|END)[A-WYZ]+\d*X")  # a name has no X: marks may touch
_SPANS = re.compile(r"XNLBEGIN([A-WYZ]+\d*)X(.*?)XNLEND\1X", re.DOTALL)


def listed_span_count(candidates: int, pickable: int) -> int:
    """Return how many of an edition's papers, from the first, are in span
    "L<n>" in its list of titles, for ``candidates`` papers that may have a
    top card in a reader's copy and ``pickable`` papers with a pick card:
    every paper a reader's copy may leave out of the list because it is a
    top card or a pick (0 for an issue no reader gets: no candidates)."""
    return max(candidates, pickable) if candidates else 0


def show_spans(text: str, shown: set[str] | frozenset[str]) -> str:
    """Return ``text`` with the spans named in ``shown`` kept (their marks
    removed) and every other span removed with its content."""
    while True:
        out = _SPANS.sub(lambda m: show_spans(m.group(2), shown) if m.group(1) in shown else "", text)
        if out == text:
            return out
        text = out


# The fields of a pick card before it is filled (see PicksLayout).
PICK_NUMBER = "XNLPICKNUMBERX"
PICK_BODY = "XNLPICKBODYX"  # the paper: one of PicksPart.bodies
PICK_CODE = "XNLPICKCODEX"  # the paper's part of its feedback token
PICK_WHY = "XNLPICKWHYX"  # the reason's sentence, one of PicksLayout.why
PICK_SUBJECT = "XNLPICKSUBJECTX"  # inside a reason: the phrase, author, title or category
PICK_ALSO = "XNLPICKALSOX"  # inside a reason: where PicksPart.also goes, or nothing
PICK_WORDS = "XNLPICKWORDSX"  # inside a reason: where PicksPart.words goes, or nothing
REASON_KINDS = ("interest", "near", "author", "seed", "liked", "category")
# A reason's subject as an email shows it, at most: so the plain-text part's
# longest reason line, "10. Like *…*, which you liked", fits in 78 columns.
PICK_SUBJECT_CHARS = 48
# With a second interest, each of the two at most this long ("10. Matches *…*
# and *…*" in 78 columns); the words a reason shows, joined, at most this long.
PICK_ALSO_CHARS = 28
PICK_WORDS_CHARS = 60


@dataclass(frozen=True)
class Paper:
    """One paper of a day's batch, already normalized (see ``batches.py``)."""

    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    arxiv_id: str | None = None  # without version, e.g. "2406.11614"
    # The paper's page: its arXiv abstract page when its id is known; None
    # when the source names none (its title then links its archive page).
    url: str | None = None
    upvotes: int | None = None
    code_url: str | None = None  # the code repository (githubRepo, or a code host link in the abstract)
    ai_summary: str | None = None  # the source's machine-written one-line summary
    keywords: tuple[str, ...] = ()  # the source's keywords (the daily papers API's ai_keywords)
    categories: tuple[str, ...] = ()  # arXiv categories, the primary one first
    project_url: str | None = None  # the project page, apart from the code
    github_stars: int | None = None
    comment_count: int | None = None  # comments on the daily papers page
    # The source's picture of the paper (the daily papers API's thumbnail),
    # http(s) only. Never shown from there: with NEWSLETTER_THUMBNAILS on, a
    # copy is stored when the day is (newsletter.papers.thumbnails) and
    # served by the web app at paper_path(key) + "/thumbnail.png".
    thumbnail_url: str | None = None
    # Whether the web app has that copy to serve. Set by the send's plan
    # (sending.plan.plan_run) on the papers of its editions when the setting
    # is on; False everywhere else (a batch file, the store's papers).
    thumbnail_stored: bool = False

    @property
    def pdf_url(self) -> str | None:
        """The arXiv PDF link, or None when the arXiv id is unknown."""
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else None


class Thumbnail(NamedTuple):
    """The web app's copy of a paper's thumbnail: PNG bytes and the
    picture's size in pixels."""

    png: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Batch:
    """An edition's papers, in the order they should appear: a day's (as
    loaded from a file), or a week's (built from the store: see
    newsletter.issue.editions)."""

    date: dt.date
    papers: tuple[Paper, ...]
    source: str = ""  # the file or URL the batch came from, for messages
    # What the loader repaired, one line per affected entry (such as control
    # characters removed from an abstract), for the commands to show.
    warnings: tuple[str, ...] = ()
    kind: EditionKind = EditionKind.DAILY
    missing_days: tuple[dt.date, ...] = ()  # a weekly edition's days with no stored batch

    @property
    def edition(self) -> Edition:
        """The edition these papers make."""
        return Edition(self.date, self.kind)


@dataclass(frozen=True)
class PicksPart:
    """The "Picked for you" section of one part (HTML or text) of an issue,
    rendered once, to be filled per reader: ``head`` + one ``card`` per pick
    + ``tail``, or the ``no_match`` line (interests, none matched today), the
    ``held`` line (what matched was picked for them recently: ``PICK_NUMBER``
    stands for how many) or the ``invite`` line (no interests yet). A card
    holds the ``PICK_*`` fields;
    ``why`` has, for each kind of reason (see Reason), the sentence in which
    ``PICK_SUBJECT`` stands for its subject, ``PICK_ALSO`` for ``also`` (in
    which ``PICK_SUBJECT`` stands for a second interest) or nothing, and
    ``PICK_WORDS`` for ``words`` (in which ``PICK_SUBJECT`` stands for the
    words that show the match, joined by ", ") or nothing."""

    head: str
    card: str
    tail: str
    no_match: str
    held: str
    invite: str
    why: dict[str, str]
    bodies: tuple[str, ...] = ()  # each paper's part of a pick card, by its position
    also: str = ""
    words: str = ""


@dataclass(frozen=True)
class PicksLayout:
    """The picks section of an issue, in its HTML and text parts."""

    html: PicksPart
    text: PicksPart


@dataclass(frozen=True)
class Issue:
    """A rendered issue: everything needed to send or show it.

    ``html`` is the email (size-bounded, CSS inlined) and ``web_html`` the full
    web version with every paper as a card. Both carry no personal data: the
    email's unsubscribe link is :data:`UNSUBSCRIBE_URL_MARK`, replaced per
    recipient by :meth:`personalized`.
    """

    date: dt.date
    subject: str
    preheader: str
    html: str
    text: str
    web_html: str
    paper_count: int
    card_count: int  # papers shown as full cards in the email
    listed_count: int  # papers shown as linked titles in the compact list
    web_url: str = ""
    kind: EditionKind = EditionKind.DAILY
    picks: PicksLayout | None = None  # the section each reader's picks fill (None: no picks section)
    papers: tuple[Paper, ...] = ()  # the edition's papers, in its order (a pick's position is an index)
    paper_codes: tuple[str, ...] = ()  # each paper's code in its feedback tokens (see tokens.Signer.paper_code)
    paper_urls: tuple[str, ...] = ()  # each paper's title link (see render.paper_url)
    # A reader's copy: the papers 0 to candidates - 1 may have a card under
    # "Top of the day" (span "K<n>"); the first top_count of them that are
    # not the reader's picks do (see email.mjml). 0: no spans.
    top_count: int = 0
    candidates: int = 0
    # The subject with SUBJECT_PICK_MARK where each reader's first pick goes,
    # when the operator's subject template names it; "" when every reader
    # gets ``subject``.
    personal_subject: str = ""

    def shown_spans(self, picked: set[int] | frozenset[int] = frozenset(), every_title: bool = True,
                    muted: set[int] | frozenset[int] = frozenset()) -> set[str]:
        """Return the names of the spans a reader's copy shows (see
        :data:`SPAN_MARKS`), for a reader whose picks are at the positions
        ``picked``, whose top cards leave out the papers at ``muted`` and
        who wants every title (else the one line): the first ``top_count``
        candidates neither picked nor muted as top cards, and in the list
        every title that is neither a top card nor a pick (a pick has its
        card under "Picked for you")."""
        top = [i for i in range(self.candidates) if i not in picked and i not in muted][: self.top_count]
        shown = {f"K{i}" for i in top}
        shown.update(f"L{i}" for i in range(self.listed_spans) if i not in picked and f"K{i}" not in shown)
        shown.add("ALL" if every_title else "ONE")
        return shown

    @property
    def listed_spans(self) -> int:
        """How many of the edition's papers, from the first, are in span
        "L<n>" in the list of titles (see :func:`listed_span_count`);
        every later title is in every copy."""
        return listed_span_count(self.candidates, self.pickable)

    @property
    def pickable(self) -> int:
        """How many of the edition's papers, from the first, have a pick
        card and so can be picked (see ``render.PICKABLE_BYTES``): all but
        the tail of a very big week; 0 without a picks section."""
        return len(self.picks.html.bodies) if self.picks else 0

    @functools.cached_property
    def edition(self) -> str:
        """What the ledger, stored issues and feedback tokens call this
        issue: its edition's key (see :class:`Edition`; kept: a send asks
        for it for every reader)."""
        return Edition(self.date, self.kind).key

    @property
    def html_bytes(self) -> int:
        """Size of the email's HTML in UTF-8 bytes, as a client decodes it. On
        the wire it is quoted-printable and larger: ``render.encoded_bytes``
        gives that size, which the size budget counts."""
        return len(self.html.encode("utf-8"))

    @property
    def text_bytes(self) -> int:
        """Size of the plain-text part in UTF-8 bytes."""
        return len(self.text.encode("utf-8"))

    @property
    def more_count(self) -> int:
        """Papers counted in the email but shown only in the web version."""
        return self.paper_count - self.card_count - self.listed_count

    def personalized(self, unsubscribe_url: str, preferences_url: str = "", feedback: str = "",
                     picks: tuple[str, str] = ("", ""), preheader: str | None = None,
                     shown: set[str] | None = None) -> tuple[str, str]:
        """Return (html, text) with a reader's values filled in: their
        unsubscribe link, preferences page, feedback token part, picks
        section (its HTML and text) and preheader (None: the issue's), and
        the spans ``shown`` (None: those of a reader without picks who
        wants every title). For files no reader gets, pass stand-ins."""
        shown = self.shown_spans() if shown is None else shown
        html_values = {UNSUBSCRIBE_URL_MARK: escape(unsubscribe_url), PREFERENCES_URL_MARK: escape(preferences_url),
                       FEEDBACK_MARK: escape(feedback), PICKS_MARK: picks[0],
                       PREHEADER_MARK: escape(self.preheader if preheader is None else preheader)}
        text_values = {UNSUBSCRIBE_URL_MARK: unsubscribe_url, PREFERENCES_URL_MARK: preferences_url,
                       FEEDBACK_MARK: feedback, PICKS_MARK: picks[1]}
        return (show_spans(fill_marks(self.html, html_values), shown),
                show_spans(fill_marks(self.text, text_values), shown))


@dataclass(frozen=True)
class Subscriber:
    """A reader on the list. ``ref`` is the opaque reference signed links carry."""

    id: int
    ref: str
    email: str
    name: str | None
    status: SubscriberStatus
    source: str
    created_at: dt.datetime
    updated_at: dt.datetime
    schedule: Schedule = Schedule()  # when they get the newsletter


class Addressee(NamedTuple):
    """A reader as a send addresses them: what their message and links
    need of a :class:`Subscriber`. (A named tuple: a send reads one for
    every reader, and it is the quickest to make.)"""

    id: int
    ref: str
    email: str
    name: str | None


@dataclass(frozen=True, slots=True)  # slots: an import keeps one per address, and a list can hold a million
class SubscriberRow:
    """One row of a subscriber list to import: the ``line`` where it begins
    in its file, the address as written, the name, and the reader's
    interests, authors and schedule when the list has those columns.
    ``schedule_error`` says why the row's schedule could not be read (then
    the row is invalid, and ``schedule`` the default)."""

    line: int
    email: str
    name: str | None = None
    interests: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    schedule: Schedule = Schedule()
    schedule_error: str | None = None


@dataclass(frozen=True)
class SubscriberEvent:
    """One status change of a subscriber: when, from what, to what, and why."""

    at: dt.datetime
    old_status: str | None
    new_status: str
    source: str
    reason: str


@dataclass(frozen=True)
class Admin:
    """An operator who may use the dashboard. The password's hash stays out
    of the repr (and so of logs and error messages)."""

    id: int
    name: str
    created_at: dt.datetime
    password_changed_at: dt.datetime
    last_login_at: dt.datetime | None = None
    password_hash: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class Feedback:
    """One recipient's bounce, complaint or delivery, as reported by SES."""

    kind: FeedbackKind
    email: str
    issue_date: str | None  # from the X-Newsletter-Issue header, or a Rendering Failure's template name
    bounce_type: str | None = None  # Permanent, Transient, Undetermined
    bounce_subtype: str | None = None
    detail: str | None = None  # the diagnostic code, complaint feedback type or rendering error
    at: dt.datetime | None = None


# An arXiv identifier: new style (2403.01234; four digits after the dot
# before 2015) or old style (hep-th/9901001), optionally with "arXiv:" before
# it and a version after it; group 1 is the id without either.
ARXIV_ID = re.compile(
    r"^(?:arxiv:)?(\d{4}\.\d{4,5}|[a-z][a-z.\-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$",
    re.IGNORECASE,
)
# An arxiv.org abstract or PDF page, with or without the scheme, a query or
# a fragment; group 1 is what names the paper.
_ARXIV_PAGE = re.compile(
    r"^(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/([^?#]+?)(?:\.pdf)?/?(?:[?#].*)?$",
    re.IGNORECASE,
)


def arxiv_id_of(text: str) -> str | None:
    """The arXiv id, without its version, that ``text`` names: an id
    (``2403.01234v2``, ``arXiv:2403.01234``, ``hep-th/9901001``) or an
    arxiv.org abstract or PDF link; None when it names none."""
    value = text.strip()
    page = _ARXIV_PAGE.match(value)
    match = ARXIV_ID.match(page.group(1) if page else value)
    return match.group(1) if match else None


def paper_key(paper: Paper) -> str:
    """A paper's key: its arXiv id without a version, or, for a source
    without ids, its :func:`title_key`. The same paper seen first without
    an id and later with one is one paper: the store links the two keys
    (the ``title:`` key becomes an alias of the arXiv id; see
    newsletter.store.papers)."""
    return paper.arxiv_id or title_key(paper.title)


def title_key(title: str) -> str:
    """``title:`` and ``title`` normalized (case, accents and punctuation
    ignored): the key of a paper without an arXiv id, and what matches it
    to the same paper with one."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", title) if not unicodedata.combining(c))
    return "title:" + "-".join(re.findall(r"\w+", plain.casefold()))[:200]


def paper_path(key: str) -> str:
    """The address, from the web app's root, of the archive page of the paper
    ``key`` (see :func:`paper_key`): every character but letters, digits,
    ``-._~``, ``/`` and ``:`` percent-encoded (UTF-8)."""
    return "/papers/" + quote(key, safe="/:")


def thumbnail_path(key: str) -> str:
    """The address, from the web app's root, of the stored thumbnail of the
    paper ``key``: its archive page's address and ``/thumbnail.png``."""
    return paper_path(key) + "/thumbnail.png"


# A paper's page on the daily papers site, by its arXiv id.
DAILY_PAPERS_PAGE = "https://huggingface.co/papers/"


def daily_papers_url(paper: Paper, counted: bool = False) -> str | None:
    """The address of ``paper``'s page on the daily papers site, or None when
    it has no arXiv id or did not come from there. Only the daily papers
    count upvotes and comments: a paper with either came from them
    (``counted``: its upvotes are known apart from it, as in the archive's
    appearances)."""
    from_daily_papers = counted or paper.upvotes is not None or paper.comment_count is not None
    return DAILY_PAPERS_PAGE + paper.arxiv_id if paper.arxiv_id and from_daily_papers else None


DEFAULT_PICKS = 5  # picks per reader unless they choose otherwise
MAX_PICKS = 10


class PicksState(StrEnum):
    """What one reader's email says of picks (see ``picking.reader_picks``)."""

    PICKS = "picks"  # their picks, in a "Picked for you" section
    NONE = "none"  # they have interests; nothing matched in this edition
    HELD = "held"  # they have interests; what matched was picked for them recently
    INVITE = "invite"  # nothing to pick by yet: an invitation to set interests
    OFF = "off"  # they want no picks (or the email has no picks section)


class RestOfDay(StrEnum):
    """How a reader's email shows the day's papers that are neither picked
    for them nor among the top cards (the web version shows every one)."""

    TITLES = "titles"  # every title, as a compact linked list
    COUNT = "count"  # just the top: one line, "N more papers today", linking the web version


class Muting(StrEnum):
    """Where a reader's muted phrases (``Profile.muted``) hide the papers
    that mention them: never picked for them, and for those who choose it
    not on their top cards either (the web version shows every paper)."""

    PICKS = "picks"  # from their picks only
    TOP = "top"  # from their picks and from the top of the day (or of the week)


@dataclass(frozen=True)
class Profile:
    """What one reader told us they read (all optional)."""

    subscriber_id: int
    interests: tuple[str, ...] = ()  # free phrases
    authors: tuple[str, ...] = ()  # followed authors' names
    categories: tuple[str, ...] = ()  # arXiv categories, e.g. cs.CV
    seeds: tuple[str, ...] = ()  # keys of papers they like (see models.paper_key)
    liked: tuple[str, ...] = ()  # keys of papers they voted 👍
    disliked: tuple[str, ...] = ()  # keys of papers they voted 👎
    picks: int = DEFAULT_PICKS  # how many picks they want (0: none)
    rest: RestOfDay = RestOfDay.TITLES  # the rest of the day: every title, or one line
    muted: tuple[str, ...] = ()  # phrases: a paper whose title or abstract says one is never picked
    muting: Muting = Muting.PICKS  # where the muted phrases hide papers: picks, or the top cards too

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to pick by: no interest, author,
        category, seed paper or 👍 (a reader only of 👎 has none either)."""
        return not (self.interests or self.authors or self.categories or self.seeds or self.liked)


@dataclass(frozen=True)
class Reason:
    """Why a paper was picked: ``kind`` is "interest", "near" (close to an
    interest phrase, without enough of its words to match it), "author",
    "seed", "liked" or "category"; ``subject`` the phrase, author name,
    paper title or category; ``also`` a second interest phrase the paper matches as well
    ("" for none; interests only); ``words`` the evidence, the words of the
    paper that made the match (its words shared with the phrase or paper,
    and its weightiest words close to them), best first."""

    kind: str
    subject: str
    also: str = ""
    words: tuple[str, ...] = ()

    def text(self) -> str:
        """The reason in words, emphasis marked with asterisks
        (``matches *machine unlearning* and *diffusion models*: unlearning,
        concept erasure``)."""
        also = f" and *{self.also}*" if self.also else ""
        words = f": {', '.join(self.words)}" if self.words else ""
        return {
            "interest": f"matches *{self.subject}*{also}{words}",
            "near": f"close to *{self.subject}*{words}",
            "author": f"by {self.subject}, whom you follow",
            "seed": f"like *{self.subject}*, which you like{words}",
            "liked": f"like *{self.subject}*, which you liked{words}",
            "category": f"in {self.subject}, which you follow",
        }[self.kind]

    def stored(self) -> str:
        """The subject as a store keeps it, in one text column: the
        subject alone, or, with a second interest or words, the subject,
        the second interest and the words joined by ", " on three lines
        (a subject has no line break: a row of before the words reads as
        it did). At most :data:`REASON_STORED_CHARS` characters. (Made
        once per reason: a send stores every reader's, and readers share
        reasons.)"""
        stored = self.__dict__.get("_stored")  # kept beside the fields, never compared
        if stored is None:
            def line(text: str, most: int) -> str:
                return " ".join(text.split())[:most]

            if not (self.also or self.words):
                stored = line(self.subject, REASON_STORED_CHARS)
            else:
                words = line(", ".join(w.replace(",", " ") for w in self.words), 200)
                stored = "\n".join((line(self.subject, 200), line(self.also, 96), words))
            self.__dict__["_stored"] = stored  # frozen: set as cached_property sets its value
        return stored

    @classmethod
    def from_stored(cls, kind: str, stored: str) -> "Reason":
        """The reason of ``kind`` whose subject a store keeps as ``stored``
        (see :meth:`stored`)."""
        subject, _, rest = stored.partition("\n")
        also, _, words = rest.partition("\n")
        return cls(kind, subject, also, tuple(w for w in words.split(", ") if w))


# How long a reason's stored subject may be (the picks table's why_subject).
REASON_STORED_CHARS = 500


class Pick(NamedTuple):
    """One paper picked for a reader: its position in the edition and its
    key, its relevance (before the upvotes prior) and why. (A named tuple:
    a million readers' picks are made per edition, and it is the quickest
    to build.)"""

    position: int
    key: str
    score: float
    reason: Reason


_MARKS = re.compile("|".join(re.escape(mark) for mark in PERSONAL_MARKS))


def fill_marks(text: str, values: dict[str, str]) -> str:
    """Return ``text`` with each personal mark replaced by its value, in one
    pass (a value holding a mark is not filled again)."""
    return _MARKS.sub(lambda match: values[match.group()], text)


_PICK_FIELDS = re.compile("|".join((PICK_NUMBER, PICK_BODY, PICK_CODE, PICK_WHY, PICK_SUBJECT, PICK_ALSO, PICK_WORDS)))


def fill_picks(piece: str, values: dict[str, str]) -> str:
    """Return a piece of the picks section with its ``PICK_*`` fields
    replaced by ``values``, in one pass (a value holding a field's name is
    not filled again)."""
    return _PICK_FIELDS.sub(lambda match: values[match.group()], piece)
