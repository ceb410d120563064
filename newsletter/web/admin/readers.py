"""The dashboard's readers: the list (search, filters, pages by id), one
reader's page and what an operator does to them (suppress, reactivate,
send an edition again), and importing and exporting the list.

Every change to a reader is recorded in their history with the source
``admin:<name>`` and the reason the operator typed.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import os
from typing import BinaryIO

from flask import Response, flash, get_flashed_messages, redirect, request

from newsletter.core.errors import ListError, NewsletterError
from newsletter.readers.lists import iter_subscriber_csv, iter_subscriber_rows
from newsletter.core.models import Edition, Frequency, SubscriberStatus
from newsletter.core.policy import operator_reactivation_refusal
from newsletter.sending.single import resend
from newsletter.core.text import clean_name, strip_controls
from newsletter.web.admin.access import IMPORT_ENDPOINTS, MAX_IMPORT_BYTES, admin_page, blueprint, current_admin
from newsletter.web.admin.pages import edition_label, web_version
from newsletter.web.app import page, parse_id, state

PAGE_SIZE = 50
# The most rows a dashboard import may have (larger lists: `newsletter
# subscribers import`): what an import keeps per address, times this, bounds
# the server's memory.
MAX_IMPORT_ROWS = 100_000
MAX_REASON_CHARS = 500
MAX_SEARCH_CHARS = 320


def actor() -> str:
    """The source of the current operator's changes: ``admin:<name>``."""
    return f"admin:{current_admin().name}"


def choice(name: str, allowed) -> str:
    """The query's ``name`` when it is one of ``allowed``, else ""."""
    value = request.args.get(name, "")
    return value if value in allowed else ""


# --------------------------------------------------------------------------
# the list


@blueprint.get("/subscribers")
def subscribers() -> Response:
    """Readers whose address or name starts with ``q``, filtered by status,
    frequency and source, :data:`PAGE_SIZE` at a time after the id
    ``after`` (from the first when it is not an id: :func:`parse_id`)."""
    store = state().store
    sources = store.subscriber_sources()
    # No address or name holds a control character (and PostgreSQL's text cannot hold NUL).
    filters = {"q": strip_controls(request.args.get("q", ""))[0].strip()[:MAX_SEARCH_CHARS],
               "status": choice("status", tuple(SubscriberStatus)),
               "frequency": choice("frequency", tuple(Frequency)),
               "source": choice("source", sources)}
    after = parse_id(request.args.get("after")) or 0
    found = store.search_subscribers(filters["q"], status=filters["status"] or None,
                                     frequency=filters["frequency"] or None, source=filters["source"] or None,
                                     after=after, limit=PAGE_SIZE + 1)
    shown = found[:PAGE_SIZE]
    first_query = {k: v for k, v in filters.items() if v}
    next_query = {**first_query, "after": shown[-1].id} if len(found) > PAGE_SIZE else None
    return admin_page("admin/subscribers.html", heading="Subscribers", section="subscribers", readers=shown,
                      filters=filters, statuses=tuple(SubscriberStatus), frequencies=tuple(Frequency),
                      sources=sources, first_query=first_query, next_query=next_query, first_page=after == 0)


# --------------------------------------------------------------------------
# one reader


def reader_or_404(subscriber_id: int):
    return state().store.get_subscriber(subscriber_id)


def sendable(deliveries) -> list[str]:
    """The keys of the editions a reader's page offers to send again: every
    edition the ledger has for them (``deliveries``), newest first."""
    found = []
    for delivery in deliveries:
        try:
            found.append(Edition.parse(delivery.edition).key)
        except ValueError:  # not an edition's key: nothing to render again
            continue
    return found


@blueprint.get("/subscribers/<id:subscriber_id>")
def reader(subscriber_id: int) -> Response:
    app = state()
    store = app.store
    subscriber = reader_or_404(subscriber_id)
    if subscriber is None:
        return page("web/not_found.html", 404)
    deliveries = store.reader_deliveries(subscriber.id)
    feedback = store.reader_feedback(subscriber.email)
    return admin_page(
        "admin/reader.html", heading=subscriber.email, section="subscribers", reader=subscriber,
        schedule=subscriber.schedule.describe(app.settings.weekly_weekday),
        events=list(reversed(store.events(subscriber.id))), deliveries=deliveries,
        feedback=[f for f in feedback if f.kind != "delivery"],
        delivered={f.edition for f in feedback if f.kind == "delivery"},
        profile=store.profile(subscriber.id), votes=store.votes(subscriber.id),
        edition_label=edition_label, web_version=web_version,
        sendable=sendable(deliveries), messages=get_flashed_messages(with_categories=True),
        active=subscriber.status == SubscriberStatus.ACTIVE,
        complained=subscriber.status == SubscriberStatus.COMPLAINED,
    )


def typed_reason() -> str:
    """The reason the operator typed, as one line of printable text."""
    text, _removed = strip_controls(request.form.get("reason", "")[:MAX_REASON_CHARS * 2])
    return " ".join(text.split())[:MAX_REASON_CHARS]


def back_to(subscriber_id: int) -> Response:
    return redirect(f"/admin/subscribers/{subscriber_id}", 303)


@blueprint.post("/subscribers/<id:subscriber_id>/suppress")
def suppress(subscriber_id: int) -> Response:
    """Stop sending to an active reader (status unsubscribed, by the
    operator: the reader cannot undo it from their links)."""
    subscriber = reader_or_404(subscriber_id)
    if subscriber is None:
        return page("web/not_found.html", 404)
    reason = typed_reason()
    if not reason:
        flash("Say why: the reason goes into the reader's history. Nothing was changed.", "error")
    elif state().store.change_status(subscriber.id, SubscriberStatus.UNSUBSCRIBED, source=actor(), reason=reason,
                                     only_from=(SubscriberStatus.ACTIVE,)):
        flash("Suppressed: no more issues go to this address.", "done")
    else:
        flash("Nothing was changed: the address is not active.", "error")
    return back_to(subscriber.id)


@blueprint.post("/subscribers/<id:subscriber_id>/reactivate")
def reactivate(subscriber_id: int) -> Response:
    """Make a reader active again, with the list's rules
    (:func:`operator_reactivation_refusal`): a complained address only with
    the confirmation box ticked."""
    subscriber = reader_or_404(subscriber_id)
    if subscriber is None:
        return page("web/not_found.html", 404)
    reason = typed_reason()
    refusal = operator_reactivation_refusal(subscriber.status, request.form.get("confirm") == "yes")
    if not reason:
        flash("Say why: the reason goes into the reader's history. Nothing was changed.", "error")
    elif refusal:
        flash(f"Nothing was changed: {refusal}.", "error")
    # Only from the status the rules were checked against: a complaint
    # arriving meanwhile is not overridden unconfirmed.
    elif state().store.change_status(subscriber.id, SubscriberStatus.ACTIVE, source=actor(), reason=reason,
                                     only_from=(subscriber.status,)):
        flash(f"Reactivated (was {subscriber.status}): the next issues go to this address.", "done")
    else:
        flash("Nothing was changed: the address changed meanwhile; look again.", "error")
    return back_to(subscriber.id)


@blueprint.post("/subscribers/<id:subscriber_id>/resend")
def send_again(subscriber_id: int) -> Response:
    """Send one edition again to an active reader, outside the ledger:
    only one the page offers (:func:`sendable`), else 400."""
    app = state()
    subscriber = reader_or_404(subscriber_id)
    if subscriber is None:
        return page("web/not_found.html", 404)
    key = request.form.get("edition", "")
    if key not in sendable(app.store.reader_deliveries(subscriber.id)):
        return admin_page("admin/error.html", 400, heading="Nothing was sent", section="subscribers",
                          message="Nothing was sent: only an edition this reader was sent (those listed on "
                                  "their page) can be sent again.")
    edition = Edition.parse(key)
    try:
        message_id = resend(app.settings, app.store, app.signer, edition, subscriber)
    except NewsletterError as exc:
        flash(f"Nothing was sent: {exc}", "error")
    else:
        flash(f"Sent {edition_label(edition.key)} again ({message_id}).", "done")
    return back_to(subscriber.id)


# --------------------------------------------------------------------------
# import and export


@blueprint.get("/import")
def import_form() -> Response:
    return import_page(200)


def import_page(status: int, error: str = "", report=None, **shown) -> Response:
    """The import page with ``status``, saying ``error`` (when not empty)
    or showing an import's ``report`` (``shown``: dry_run, file_name,
    payload)."""
    return admin_page("admin/import.html", status, heading="Import and export", section="import", report=report,
                      error=error, statuses=tuple(SubscriberStatus), max_bytes=MAX_IMPORT_BYTES,
                      max_rows=MAX_IMPORT_ROWS, counts=None, **shown)


def too_large(name: str, what: str) -> Response:
    """The import page refusing the file ``name`` for being ``what`` (413)."""
    return import_page(413, f"{name}: {what}; import it with `newsletter subscribers import`.")


def _report_page(name: str, stream: BinaryIO, dry_run: bool) -> Response:
    """Read the CSV file open in ``stream`` (the file ``name``, at most
    :data:`MAX_IMPORT_BYTES`) and import it, or with ``dry_run`` only say
    what importing it would do. The file is read row by row, twice: once
    to count its rows (more than :data:`MAX_IMPORT_ROWS` are refused, 413),
    then into the import, which keeps little per address."""
    store = state().store
    try:
        for count, _row in enumerate(iter_subscriber_rows(stream, name), 1):
            if count > MAX_IMPORT_ROWS:
                return too_large(name, f"more than {MAX_IMPORT_ROWS:,} rows")
        stream.seek(0)
        report = store.import_subscribers(iter_subscriber_rows(stream, name, with_profiles=True),
                                          source=actor()[:32], reason=f"imported from {name}"[:1000],
                                          dry_run=dry_run)
    except ListError as exc:
        return import_page(400, str(exc))
    payload = ""
    if dry_run:  # the file goes back with the confirmation
        stream.seek(0)
        payload = base64.b64encode(stream.read()).decode("ascii")
    return import_page(200, report=report, dry_run=dry_run, file_name=name, payload=payload)


@blueprint.errorhandler(413)
def request_too_large(_error) -> Response:
    """A request over its size limit (see ``access.guard``): on an import
    route, the import page saying so; elsewhere, as the app answers it."""
    if request.endpoint in IMPORT_ENDPOINTS:
        return import_page(413, f"The file is larger than {MAX_IMPORT_BYTES:,} bytes; import it with "
                                "`newsletter subscribers import`.")
    return Response("Request too large\n", status=413, mimetype="text/plain")


@blueprint.post("/import")
def import_preview() -> Response:
    """The uploaded file's report, as ``subscribers import`` gives it, with
    nothing written: the operator confirms on that page."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return import_page(400, "Choose a CSV file to import.")
    name = clean_name(upload.filename.replace("\\", "/").rpartition("/")[2])[:100] or "upload.csv"
    stream = upload.stream  # on disk once past a few hundred KB: parsed from there
    if stream.seek(0, os.SEEK_END) > MAX_IMPORT_BYTES:
        return too_large(name, f"larger than {MAX_IMPORT_BYTES:,} bytes")
    stream.seek(0)
    return _report_page(name, stream, dry_run=True)


@blueprint.post("/import/confirm")
def import_confirm() -> Response:
    """Import the file the preview carried back, all or nothing, within the
    same limits as the preview."""
    name = clean_name(request.form.get("name", ""))[:100] or "upload.csv"
    try:
        data = base64.b64decode(request.form.get("payload", ""), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        return import_page(400, "The file did not come back with the confirmation: upload it again.")
    if len(data) > MAX_IMPORT_BYTES:
        return too_large(name, f"larger than {MAX_IMPORT_BYTES:,} bytes")
    return _report_page(name, io.BytesIO(data), dry_run=False)


@blueprint.get("/export")
def export() -> Response:
    """The list (or the readers of one status) as CSV, streamed."""
    status = choice("status", tuple(SubscriberStatus))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    name = f"subscribers-{status or 'all'}-{stamp}.csv"
    body = iter_subscriber_csv(state().store.iter_subscribers(status=status or None))
    return Response(body, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'})
