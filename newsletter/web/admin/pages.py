"""The dashboard's overview, sends and settings pages, and the JSON a
running send's live view polls."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from flask import Response, request

from newsletter.core.config import DECLARED, masked_url, shown_default
from newsletter.operators.doctor import run_checks
from newsletter.feedback.stats import BOUNCE_REVIEW, COMPLAINT_REVIEW, WARN_SHARE, IssueStats, edition_stats
from newsletter.core.models import Edition, EditionKind, SubscriberStatus
from newsletter.store import EditionTotals, Store
from newsletter.web.admin.access import admin_page, blueprint
from newsletter.web.admin.charts import daily_bars, rate_bars
from newsletter.web.app import state

PERIODS = (30, 90, 365)
# Editions whose bounce and complaint rates the overview charts.
DELIVERABILITY_EDITIONS = 30
SENDS_PER_PAGE = 30


# --------------------------------------------------------------------------
# editions as the pages show them


def edition_label(key: str) -> str:
    """``2025-03-11`` → "Tue 11 Mar 2025"; a weekly edition says so."""
    try:
        edition = Edition.parse(key)
    except ValueError:
        return key
    day = edition.date
    return f"{day:%a} {day.day} {day:%b %Y}" + (" (weekly)" if edition.kind == EditionKind.WEEKLY else "")


def short_label(key: str) -> str:
    """``2025-03-11`` → "11 Mar" (a weekly edition: "11 Mar (w)")."""
    try:
        edition = Edition.parse(key)
    except ValueError:
        return key
    return f"{edition.date.day} {edition.date:%b}" + (" (w)" if edition.kind == EditionKind.WEEKLY else "")


def web_version(key: str) -> str | None:
    """The edition's web version on this site (/issues/<date>, or
    /issues/<date>/weekly), or None for a key that is not an edition's."""
    try:
        edition = Edition.parse(key)
    except ValueError:
        return None
    return f"/issues/{edition.date}" + ("/weekly" if edition.kind == EditionKind.WEEKLY else "")


@dataclass(frozen=True)
class SendView:
    """One send as the pages show it: the ledger's totals, whether a run is
    at it now, and whether it finished (no reader left waiting)."""

    totals: EditionTotals
    state: str  # running, finished, stopped

    @property
    def key(self) -> str:
        return self.totals.edition

    @property
    def label(self) -> str:
        return edition_label(self.key)

    @property
    def link(self) -> str | None:
        return web_version(self.key)

    def live(self) -> dict:
        """The figures the live view polls."""
        counts = self.totals.counts
        rate = self.totals.rate
        return {"edition": self.key, "state": self.state, "sent": counts.get("sent", 0),
                "failed": counts.get("failed", 0), "unknown": counts.get("unknown", 0),
                "pending": counts.get("pending", 0), "rate": round(rate, 1) if rate is not None else None,
                "last": self.totals.last_at.isoformat(timespec="seconds")}


def send_views(store: Store, keys: list[str]) -> dict[str, SendView]:
    """The :class:`SendView` of each of ``keys`` that has ledger rows."""
    totals = store.edition_totals(keys)
    running = store.running_sends()
    finished = store.finished_at(totals)
    views = {}
    for key, found in totals.items():
        if key in running:
            status = "running"
        elif finished.get(key) and finished[key] >= found.last_at - dt.timedelta(seconds=1):
            status = "finished"
        else:
            status = "stopped"
        views[key] = SendView(found, status)
    return views


# --------------------------------------------------------------------------
# the overview


def daily_series(changes: list[tuple[dt.date, str | None, str, int]], days: list[dt.date],
                 active_now: int) -> dict[str, list[int]]:
    """From the day's status changes: per day of ``days``, new readers
    ("signups"), unsubscribes, suppressions (bounced or complained), the net
    change of active readers ("net") and the active readers at the end of
    the day ("active", counted back from ``active_now``)."""
    series = {name: dict.fromkeys(days, 0) for name in ("signups", "unsubscribes", "suppressions", "net")}
    for day, old, new, count in changes:
        if day not in series["net"]:
            continue
        if old is None:
            series["signups"][day] += count
        if new == SubscriberStatus.UNSUBSCRIBED:
            series["unsubscribes"][day] += count
        if new in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
            series["suppressions"][day] += count
        if new == SubscriberStatus.ACTIVE:
            series["net"][day] += count
        if old == SubscriberStatus.ACTIVE:
            series["net"][day] -= count
    result = {name: [values[day] for day in days] for name, values in series.items()}
    active, running = [], active_now
    for net in reversed(result["net"]):
        active.append(running)
        running -= net
    result["active"] = list(reversed(active))
    return result


def alerts(stats: list[IssueStats]) -> list[tuple[str, str]]:
    """(level, sentence) for each rate near or over SES's review thresholds,
    and each edition with readers SES dropped with a Rendering Failure, most
    recent edition first: "Complaint rate 0.09% on 12 Mar: near SES's 0.1%
    limit"."""
    found = []
    for figures in stats:
        day = short_label(figures.issue_date)
        if figures.rendering_failed:
            found.append(("over", f"Rendering Failure on {day}: {figures.rendering_failure_warning()}"))
        if figures.bounce_level != "ok":
            found.append((figures.bounce_level, f"Bounce rate {figures.bounce_rate:.2%} on {day}: "
                          f"{figures.bounce_level} SES's {BOUNCE_REVIEW:.0%} limit"))
        if figures.complaint_level != "ok":
            found.append((figures.complaint_level, f"Complaint rate {figures.complaint_rate:.2%} on {day}: "
                          f"{figures.complaint_level} SES's {COMPLAINT_REVIEW:.1%} limit"))
    return found


@blueprint.get("/")
def overview() -> Response:
    store = state().store
    period = request.args.get("days", type=int)
    period = period if period in PERIODS else PERIODS[0]
    today = store.clock().date()
    days = [today - dt.timedelta(days=n) for n in range(period - 1, -1, -1)]
    counts = store.status_totals()
    series = daily_series(store.status_changes(days[0]), days, counts[SubscriberStatus.ACTIVE])
    charts = [
        daily_bars("active", "Active readers", days, series["active"],
                   "Active readers at the end of each day."),
        daily_bars("net", "Net growth", days, series["net"],
                   "Readers made active minus readers who stopped being active, per day."),
        daily_bars("signups", "Sign-ups", days, series["signups"], "New readers per day (sign-ups, imports, added)."),
        daily_bars("unsubscribes", "Unsubscribes", days, series["unsubscribes"],
                   "Readers who unsubscribed or were removed, per day."),
        daily_bars("suppressions", "Suppressions", days, series["suppressions"],
                   "Addresses suppressed after a bounce or a complaint, per day."),
    ]
    latest = store.latest_send()
    last_send = send_views(store, [latest])[latest] if latest else None
    stats = edition_stats(store, store.ledger_editions()[:DELIVERABILITY_EDITIONS])
    oldest_first = list(reversed(stats))
    rates = [
        rate_bars("bounces", "Bounce rate per edition",
                  [(s.issue_date, short_label(s.issue_date), s.bounce_rate, s.bounce_level) for s in oldest_first],
                  BOUNCE_REVIEW, WARN_SHARE, f"Permanent bounces per message sent, for the last {len(stats)} editions; "
                  f"SES reviews an account from {BOUNCE_REVIEW:.0%}."),
        rate_bars("complaints", "Complaint rate per edition",
                  [(s.issue_date, short_label(s.issue_date), s.complaint_rate, s.complaint_level)
                   for s in oldest_first],
                  COMPLAINT_REVIEW, WARN_SHARE, f"Complaints per message sent, for the last {len(stats)} editions; "
                  f"SES reviews an account from {COMPLAINT_REVIEW:.1%}."),
    ] if stats else []
    return admin_page("admin/overview.html", heading="Overview", section="overview", period=period,
                      periods=PERIODS, counts=counts, total=sum(counts.values()), charts=charts,
                      totals={name: sum(values) for name, values in series.items() if name != "active"},
                      last_send=last_send, rate_charts=rates, alerts=alerts(stats), edition_count=len(stats))


# --------------------------------------------------------------------------
# sends


@blueprint.get("/sends")
def sends() -> Response:
    """Every edition in the ledger, newest first, a page at a time (``before``
    an edition key); a running one polled live."""
    store = state().store
    every = store.ledger_editions()
    before = request.args.get("before", "")
    newer = [key for key in every if before and key >= before]
    keys = [key for key in every if not before or key < before][:SENDS_PER_PAGE]
    views = send_views(store, keys + newer[-1:])
    # Unsubscribes after this page's newest edition belong to the next one sent.
    until = views[newer[-1]].totals.first_at if newer and newer[-1] in views else None
    figures = {s.issue_date: s for s in edition_stats(store, keys, until)}
    rows = [(views[key], figures[key]) for key in keys if key in views and key in figures]
    more = len([key for key in every if not before or key < before]) > SENDS_PER_PAGE
    return admin_page("admin/sends.html", heading="Sends", section="sends", rows=rows,
                      older=keys[-1] if more and keys else "", newest=not before,
                      running=[view for view, _ in rows if view.state == "running"])


@blueprint.get("/sends/<key>/live.json")
def live(key: str) -> Response:
    # No edition's key holds a control character (and PostgreSQL's text cannot hold NUL).
    views = send_views(state().store, [key]) if key.isprintable() else {}
    if key not in views:
        return Response(json.dumps({"error": "no such send"}), 404, mimetype="application/json")
    return Response(json.dumps(views[key].live()), mimetype="application/json")


# --------------------------------------------------------------------------
# settings


@blueprint.get("/settings")
def settings_page() -> Response:
    """The effective configuration, secrets masked; and the checks."""
    settings = state().settings
    secret = settings.secret_variables
    rows = []
    for declared in DECLARED:
        value = shown_default(getattr(settings, declared.field))
        if declared.variable in secret:
            value = "•••••• (set)" if value else ""
        elif "://" in value:
            value = masked_url(value)
        rows.append({"variable": declared.variable, "value": value, "default": shown_default(declared.default),
                     "help": declared.help, "changed": getattr(settings, declared.field) != declared.default})
    # The doctor's checks ask SES and DNS (seconds at worst): run when asked.
    checks = run_checks(settings) if request.args.get("checks") == "1" else None
    return admin_page("admin/settings.html", heading="Settings", section="settings", rows=rows, checks=checks)
