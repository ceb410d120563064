"""The subscriber store: subscribers, their status history, and rendered issues.

SQLAlchemy Core over the embedded SQLite database by default, or PostgreSQL
for deployments where the web app and the sender run on different hosts; the
same code serves both. Every status change is a conditional UPDATE plus an
event row in one transaction, so concurrent writers (the web app and a cron
send) cannot lose or duplicate a change, and a person can always answer "why
did this reader stop getting mail?".
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from newsletter.errors import InvalidEmail, StoreError
from newsletter.models import UNSUBSCRIBE_URL_MARK, Issue, Subscriber, SubscriberEvent
from newsletter.text import clean_name

SCHEMA_VERSION = 1

ACTIVE = "active"
UNSUBSCRIBED = "unsubscribed"
BOUNCED = "bounced"
COMPLAINED = "complained"
STATUSES = (ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED)
# Sources of a change made by the reader themself (and so reversible by them).
READER_SOURCES = ("web", "one-click")

metadata = MetaData()

meta_table = Table(
    "newsletter_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

subscribers_table = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Opaque, random: what signed links carry instead of the address.
    Column("ref", String(32), nullable=False, unique=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased
    Column("name", String(200)),
    Column("status", String(16), nullable=False, index=True),
    Column("source", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

events_table = Table(
    "subscriber_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("old_status", String(16)),  # None when the subscriber was created
    Column("new_status", String(16), nullable=False),
    Column("source", String(32), nullable=False),
    Column("reason", String(1000), nullable=False),
)

issues_table = Table(
    "issues",
    metadata,
    Column("date", String(10), primary_key=True),  # YYYY-MM-DD
    Column("subject", String(300), nullable=False),
    Column("preheader", String(300), nullable=False),
    Column("paper_count", Integer, nullable=False),
    Column("web_html", Text, nullable=False),  # no personal link in it
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# The send ledger: one row per (issue, subscriber). A row is written as
# "pending" just before the provider is called and becomes "sent" (with the
# provider's message id) only after the provider accepted that recipient,
# "failed" for a permanent refusal, or "unknown" when the outcome could not
# be learned. A reader with no row has not been sent this issue.
PENDING = "pending"
SENT = "sent"
FAILED = "failed"
UNKNOWN = "unknown"
DELIVERY_STATUSES = (PENDING, SENT, FAILED, UNKNOWN)

deliveries_table = Table(
    "deliveries",
    metadata,
    Column("issue_date", String(10), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("status", String(10), nullable=False),
    Column("message_id", String(200)),
    Column("reason", String(1000)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

send_locks_table = Table(
    "send_locks",
    metadata,
    Column("issue_date", String(10), primary_key=True),
    Column("owner", String(200), nullable=False),  # host:pid:random
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)


# Bounces, complaints and deliveries reported by SES (through SNS), one row
# per recipient of each notification.
feedback_table = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sns_message_id", String(100), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # bounce, complaint, delivery
    Column("email_key", String(320), nullable=False, index=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id")),
    Column("issue_date", String(10), index=True),
    Column("bounce_type", String(32)),  # Permanent, Transient, Undetermined
    Column("bounce_subtype", String(64)),
    Column("detail", String(1000)),
    Column("at", DateTime(timezone=True), nullable=False),
)

# SNS message ids already handled: a redelivery changes nothing.
sns_seen_table = Table(
    "sns_messages",
    metadata,
    Column("message_id", String(100), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# Confirmation emails sent for sign-ups, for the abuse limits.
signups_table = Table(
    "signup_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email_key", String(320), nullable=False, index=True),
    Column("client", String(64), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class StoredIssue:
    """An issue as the web app shows it."""

    date: dt.date
    subject: str
    preheader: str
    paper_count: int
    web_html: str
    text: str
    updated_at: dt.datetime


@dataclass
class ImportReport:
    """What ``import_subscribers`` did, line by line."""

    added: list[int] = field(default_factory=list)
    present: list[int] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, status)


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def _utc(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC. PostgreSQL
    # hands back aware ones in the session's time zone: convert them to UTC.
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def normalize_email(address: str) -> str:
    """Return the normalized form of ``address`` (syntax only, no DNS), in
    ASCII: an internationalized domain in its IDNA form.

    Raises :class:`InvalidEmail` with the reason when it is not an address,
    or when its local part is not ASCII (that needs SMTPUTF8, which neither
    SES nor most servers accept for bulk mail).
    """
    try:
        valid = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
        return valid.ascii_email or valid.normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(f"{address.strip()!r} is not a valid email address: {exc}") from None


def _subscriber(row) -> Subscriber:
    return Subscriber(
        id=row.id,
        ref=row.ref,
        email=row.email,
        name=row.name,
        status=row.status,
        source=row.source,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _sqlite_engine(url, begin: str) -> Engine:
    """An engine whose transactions start with ``BEGIN <begin>``."""
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA busy_timeout=15000")  # wait for a writer instead of failing
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        connection.exec_driver_sql(f"BEGIN {begin}")

    return engine


def _change_status(
    conn: Connection, subscriber_id: int, new_status: str, source: str, reason: str,
    only_from: tuple[str, ...] | None,
) -> bool:
    """The body of :meth:`Store.change_status`, inside the caller's transaction."""
    old = conn.scalar(select(subscribers_table.c.status).where(subscribers_table.c.id == subscriber_id))
    if old is None or old == new_status or (only_from is not None and old not in only_from):
        return False
    stamp = now()
    changed = conn.execute(
        update(subscribers_table)
        .where(subscribers_table.c.id == subscriber_id, subscribers_table.c.status == old)
        .values(status=new_status, updated_at=stamp)
    ).rowcount
    if not changed:
        return False
    conn.execute(
        insert(events_table).values(
            subscriber_id=subscriber_id, at=stamp, old_status=old, new_status=new_status,
            source=source, reason=reason[:1000],
        )
    )
    return True


class Store:
    """Subscribers, their events and rendered issues in one database."""

    def __init__(self, database_url: str):
        """Open (and create on first use) the database at ``database_url``.

        Raises :class:`StoreError` when the URL is malformed, the database
        cannot be reached, or its schema is newer than this release.
        """
        try:
            try:
                url = make_url(database_url)
            except ValueError:  # such as a port that is not a number
                raise ArgumentError("malformed URL") from None
            if url.get_backend_name() == "sqlite":
                # Writers take the write lock up front: a deferred transaction
                # that reads and then writes fails at once with "database is
                # locked" when another process wrote in between, whatever the
                # busy timeout. Readers need no lock at all under WAL.
                self.engine = _sqlite_engine(url, "IMMEDIATE")
                self.reader = _sqlite_engine(url, "DEFERRED")
            else:
                self.engine = self.reader = create_engine(url, pool_pre_ping=True)
            self._create_schema()
        except ArgumentError:
            raise StoreError(f"malformed database URL {database_url.split('@')[-1]!r}") from None
        except (OperationalError, OSError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open the database: {str(reason).strip().splitlines()[0]}") from None
        except ModuleNotFoundError as exc:
            raise StoreError(f"the database driver is not installed ({exc.name})") from None
        except BaseException:
            self.close()
            raise

    def _create_schema(self) -> None:
        try:
            metadata.create_all(self.engine)
        except IntegrityError:  # another process created the tables at the same moment
            metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            version = conn.scalar(select(meta_table.c.value).where(meta_table.c.key == "schema_version"))
            if version is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
                except IntegrityError:
                    pass  # another process created it first
            elif int(version) > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}; this release knows up to {SCHEMA_VERSION}"
                )

    def ping(self) -> None:
        """Run a trivial query; raises :class:`StoreError` when the database is unreachable."""
        try:
            with self.reader.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError as exc:
            raise StoreError(f"database unreachable ({exc.__class__.__name__})") from None

    def close(self) -> None:
        """Release every pooled connection (safe to call more than once)."""
        for engine in {getattr(self, "engine", None), getattr(self, "reader", None)} - {None}:
            engine.dispose()

    # ---------------------------------------------------------------- reading

    def get(self, *, email: str | None = None, ref: str | None = None) -> Subscriber | None:
        """Return the subscriber with ``email`` (any case) or ``ref``, or None."""
        query = select(subscribers_table)
        if email is not None:
            query = query.where(subscribers_table.c.email_key == email.strip().lower())
        elif ref is not None:
            query = query.where(subscribers_table.c.ref == ref)
        else:
            raise TypeError("give email or ref")
        with self.reader.connect() as conn:
            row = conn.execute(query).first()
        return _subscriber(row) if row else None

    def iter_subscribers(self, status: str | None = None, page: int = 500) -> Iterator[Subscriber]:
        """Yield subscribers in id order, optionally only those with ``status``.

        Reads one page per short transaction, so a long iteration (a send)
        never holds a lock, and sees changes committed since the last page.
        """
        last_id = 0
        while True:
            query = select(subscribers_table).where(subscribers_table.c.id > last_id)
            if status:
                query = query.where(subscribers_table.c.status == status)
            query = query.order_by(subscribers_table.c.id).limit(page)
            with self.reader.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield _subscriber(row)
            last_id = rows[-1].id

    def active_ids(self, ids: Iterable[int]) -> set[int]:
        """Return those of ``ids`` that are active right now (checked just
        before sending, so a reader who left a moment ago gets nothing)."""
        ids = list(ids)
        if not ids:
            return set()
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(subscribers_table.c.id).where(
                    subscribers_table.c.id.in_(ids), subscribers_table.c.status == ACTIVE
                )
            )
            return {row.id for row in rows}

    def counts(self) -> dict[str, int]:
        """Return the number of subscribers per status (every status listed)."""
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(subscribers_table.c.status, func.count()).group_by(subscribers_table.c.status)
            ).all()
        result = dict.fromkeys(STATUSES, 0)
        result.update({status: count for status, count in rows})
        return result

    def events(self, subscriber_id: int) -> list[SubscriberEvent]:
        """Return the status history of one subscriber, oldest first."""
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(events_table)
                .where(events_table.c.subscriber_id == subscriber_id)
                .order_by(events_table.c.id)
            ).all()
        return [
            SubscriberEvent(
                at=_utc(r.at), old_status=r.old_status, new_status=r.new_status, source=r.source, reason=r.reason
            )
            for r in rows
        ]

    # ---------------------------------------------------------------- writing

    def _insert_subscriber(self, conn: Connection, email: str, name: str | None, source: str) -> int:
        stamp = now()
        subscriber_id = conn.execute(
            insert(subscribers_table).values(
                ref=secrets.token_urlsafe(16),
                email=email,
                email_key=email.lower(),
                name=clean_name(name),
                status=ACTIVE,
                source=source,
                created_at=stamp,
                updated_at=stamp,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(events_table).values(
                subscriber_id=subscriber_id, at=stamp, old_status=None, new_status=ACTIVE,
                source=source, reason="subscribed",
            )
        )
        return subscriber_id

    def add(self, email: str, name: str | None = None, source: str = "cli") -> tuple[Subscriber, bool]:
        """Add an active subscriber. Returns (subscriber, created).

        An address already present (in any case) is returned unchanged with
        ``created`` False: it is never reactivated here. Raises
        :class:`InvalidEmail` for a malformed address.
        """
        address = normalize_email(email)
        try:
            with self.engine.begin() as conn:
                self._insert_subscriber(conn, address, name, source)
            created = True
        except IntegrityError:
            created = False
        found = self.get(email=address)
        assert found is not None
        return found, created

    def change_status(
        self,
        subscriber_id: int,
        new_status: str,
        *,
        source: str,
        reason: str,
        only_from: tuple[str, ...] | None = None,
    ) -> bool:
        """Set a subscriber's status and record the event, atomically.

        Only changes a subscriber whose current status is in ``only_from``
        (any other status when None). Returns True when the status changed,
        False when it was already ``new_status`` or not allowed to change.
        """
        if new_status not in STATUSES:
            raise ValueError(f"unknown status {new_status!r}")
        with self.engine.begin() as conn:
            return _change_status(conn, subscriber_id, new_status, source, reason, only_from)

    def unsubscribe(self, ref: str, *, source: str, reason: str) -> tuple[Subscriber | None, bool]:
        """Unsubscribe the active reader with ``ref``. Idempotent.

        Returns (subscriber or None when unknown, whether anything changed).
        A bounced or complained reader stays as they are.
        """
        found = self.get(ref=ref)
        if not found:
            return None, False
        changed = self.change_status(found.id, UNSUBSCRIBED, source=source, reason=reason, only_from=(ACTIVE,))
        return self.get(ref=ref), changed

    def resubscribe(self, ref: str, *, source: str = "web") -> tuple[Subscriber | None, bool]:
        """Reactivate the reader with ``ref`` if they unsubscribed themself.

        An address unsubscribed by the operator, bounced or complained is
        left alone. Returns (subscriber or None, whether anything changed).
        """
        found = self.get(ref=ref)
        if not found or found.status != UNSUBSCRIBED:
            return found, False
        history = self.events(found.id)
        if not history or history[-1].source not in READER_SOURCES:
            return found, False
        changed = self.change_status(
            found.id, ACTIVE, source=source, reason="resubscribed by the reader", only_from=(UNSUBSCRIBED,)
        )
        return self.get(ref=ref), changed

    def import_subscribers(self, rows: Iterable[tuple[int, str, str | None]], source: str = "import") -> ImportReport:
        """Add the (line, email, name) rows in one transaction.

        Addresses already present are counted, never reactivated (those
        unsubscribed, bounced or complained are reported as refused);
        malformed addresses are reported with their line. Either every new
        address is added or, on a failure, none is. Raises
        :class:`StoreError` when a concurrent writer added one of the
        addresses first (nothing is imported then).
        """
        report = ImportReport()
        seen: dict[str, str] = {}  # lower-cased address -> status, for repeats in the file
        try:
            with self.engine.begin() as conn:
                for line, email, name in rows:
                    try:
                        address = normalize_email(email)
                    except InvalidEmail as exc:
                        report.invalid.append((line, str(exc)))
                        continue
                    key = address.lower()
                    status = seen.get(key) or conn.scalar(
                        select(subscribers_table.c.status).where(subscribers_table.c.email_key == key)
                    )
                    if status is None:
                        self._insert_subscriber(conn, address, name, source)
                        report.added.append(line)
                        status = ACTIVE
                    elif status == ACTIVE:
                        report.present.append(line)
                    else:
                        report.refused.append((line, status))
                    seen[key] = status
        except IntegrityError:
            # Someone added one of these addresses while the import ran; the
            # transaction rolled back, so running it again is safe.
            raise StoreError(
                "an address was added by someone else during the import; nothing was imported, run it again"
            ) from None
        return report

    # ---------------------------------------------------------------- feedback

    def apply_feedback(
        self, sns_message_id: str, records: list, transient_limit: int = 3, window_days: int = 30
    ) -> dict[str, list[str]] | None:
        """Record SES feedback (``newsletter.feedback.Feedback`` items) from
        one SNS message and suppress addresses, in one transaction.

        A permanent bounce or a complaint suppresses the address at once
        (status bounced or complained, with an event naming the type,
        subtype, diagnostic and issue); ``transient_limit`` transient bounces
        within ``window_days`` suppress it too. Returns {"suppressed": [...],
        "recorded": [...]} with the addresses concerned, or None when this
        SNS message was handled before (nothing changes then).
        """
        result: dict[str, list[str]] = {"suppressed": [], "recorded": []}
        stamp = now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(sns_seen_table).values(message_id=sns_message_id, received_at=stamp))
                for record in records:
                    key = record.email.strip().lower()
                    if not key:
                        continue
                    subscriber_id = conn.scalar(
                        select(subscribers_table.c.id).where(subscribers_table.c.email_key == key)
                    )
                    conn.execute(insert(feedback_table).values(
                        sns_message_id=sns_message_id, kind=record.kind, email_key=key,
                        subscriber_id=subscriber_id, issue_date=record.issue_date,
                        bounce_type=record.bounce_type, bounce_subtype=record.bounce_subtype,
                        detail=(record.detail or "")[:1000] or None, at=record.at or stamp,
                    ))
                    result["recorded"].append(key)
                    if subscriber_id is None:
                        continue
                    issue = f" (issue {record.issue_date})" if record.issue_date else ""
                    details = "; ".join(x for x in (record.bounce_subtype, record.detail) if x)
                    new_status = reason = None
                    if record.kind == "complaint":
                        new_status, reason = COMPLAINED, f"complaint: {record.detail or 'abuse'}{issue}"
                    elif record.kind == "bounce" and record.bounce_type == "Permanent":
                        new_status, reason = BOUNCED, f"permanent bounce: {details}{issue}"
                    elif record.kind == "bounce" and record.bounce_type == "Transient":
                        since = stamp - dt.timedelta(days=window_days)
                        recent = conn.scalar(
                            select(func.count()).select_from(feedback_table).where(
                                feedback_table.c.email_key == key, feedback_table.c.kind == "bounce",
                                feedback_table.c.bounce_type == "Transient", feedback_table.c.at >= since,
                            )
                        )
                        if recent >= transient_limit:
                            new_status = BOUNCED
                            reason = f"{recent} transient bounces in {window_days} days, last: {details}{issue}"
                    if new_status and _change_status(
                        conn, subscriber_id, new_status, "ses", reason, (ACTIVE, UNSUBSCRIBED, BOUNCED)
                    ):
                        result["suppressed"].append(key)
        except IntegrityError:
            return None  # this SNS message id was handled before
        return result

    def feedback_counts(self, since: dt.date) -> dict[str, dict[str, int]]:
        """Return {issue date: {kind: recipients}} for feedback about issues
        dated ``since`` or later; bounces count only permanent ones, as SES's
        bounce rate does."""
        f = feedback_table
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(f.c.issue_date, f.c.kind, func.count(func.distinct(f.c.email_key)))
                .where(f.c.issue_date >= since.isoformat())
                .where((f.c.kind != "bounce") | (f.c.bounce_type == "Permanent"))
                .group_by(f.c.issue_date, f.c.kind)
            ).all()
        result: dict[str, dict[str, int]] = {}
        for issue_date, kind, count in rows:
            result.setdefault(issue_date, {})[kind] = count
        return result

    def delivery_totals(self, since: dt.date) -> dict[str, dict[str, int]]:
        """Return {issue date: {ledger status: readers}} for issues dated
        ``since`` or later."""
        d = deliveries_table
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(d.c.issue_date, d.c.status, func.count())
                .where(d.c.issue_date >= since.isoformat())
                .group_by(d.c.issue_date, d.c.status)
            ).all()
        result: dict[str, dict[str, int]] = {}
        for issue_date, status, count in rows:
            result.setdefault(issue_date, {})[status] = count
        return result

    def reader_unsubscribes(self, since: dt.datetime) -> list[dt.datetime]:
        """Return when readers unsubscribed themselves (web or one-click) since ``since``."""
        e = events_table
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(e.c.at).where(
                    e.c.new_status == UNSUBSCRIBED, e.c.source.in_(READER_SOURCES), e.c.at >= since
                )
            ).all()
        return [_utc(row.at) for row in rows]

    # ---------------------------------------------------------------- sign-ups

    def count_signups(self, *, email: str | None = None, client: str | None = None,
                      since: dt.datetime) -> int:
        """Return how many confirmation emails went to ``email`` (or were
        asked for by ``client``) since ``since``. ``client`` is compared as
        :meth:`record_signup` stores it (its first 64 characters)."""
        s = signups_table
        query = select(func.count()).select_from(s).where(s.c.at >= since)
        if email is not None:
            query = query.where(s.c.email_key == email.strip().lower())
        if client is not None:
            query = query.where(s.c.client == client[:64])
        with self.reader.connect() as conn:
            return conn.scalar(query)

    def record_signup(self, email: str, client: str) -> None:
        """Remember that a confirmation email went to ``email`` for ``client``."""
        with self.engine.begin() as conn:
            conn.execute(insert(signups_table).values(email_key=email.strip().lower(), client=client[:64], at=now()))

    # ---------------------------------------------------------------- issues

    def save_issue(self, issue: Issue) -> None:
        """Insert or replace the stored copy of ``issue`` (by date): its web
        version and its text, with no personal link in either."""
        values = dict(
            subject=issue.subject,
            preheader=issue.preheader,
            paper_count=issue.paper_count,
            web_html=issue.web_html,
            text=issue.text.replace(UNSUBSCRIBE_URL_MARK, "(your personal link is in the email)"),
        )
        day = issue.date.isoformat()
        stamp = now()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(issues_table).where(issues_table.c.date == day).values(**values, updated_at=stamp)
            ).rowcount
            if not changed:
                conn.execute(insert(issues_table).values(date=day, created_at=stamp, updated_at=stamp, **values))

    def get_issue(self, date: dt.date) -> StoredIssue | None:
        """Return the stored issue of ``date``, or None."""
        with self.reader.connect() as conn:
            row = conn.execute(select(issues_table).where(issues_table.c.date == date.isoformat())).first()
        return self._issue(row) if row else None

    def list_issues(self, limit: int = 100) -> list[StoredIssue]:
        """Return the latest ``limit`` stored issues, newest first."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(issues_table).order_by(issues_table.c.date.desc()).limit(limit)).all()
        return [self._issue(row) for row in rows]

    @staticmethod
    def _issue(row) -> StoredIssue:
        return StoredIssue(
            date=dt.date.fromisoformat(row.date),
            subject=row.subject,
            preheader=row.preheader,
            paper_count=row.paper_count,
            web_html=row.web_html,
            text=row.text,
            updated_at=_utc(row.updated_at),
        )


def open_store(database_url: str) -> Store:
    """Return a :class:`Store` for ``database_url``; raises :class:`StoreError`."""
    try:
        return Store(database_url)
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc.__class__.__name__}") from None


class Ledger:
    """The send ledger and the send lock of one issue, in a :class:`Store`."""

    def __init__(self, store: Store, issue_date: dt.date):
        self.store = store
        self.day = issue_date.isoformat()

    # ---------------------------------------------------------------- lock

    def acquire(self, owner: str, is_dead: Callable[[str], bool], stale_after: float = 120.0) -> str | None:
        """Take the send lock of this issue for ``owner``.

        A lock whose holder is dead (``is_dead(owner)``) or whose heartbeat is
        older than ``stale_after`` seconds is taken over. Returns None when
        the lock was taken, else the owner holding it.
        """
        engine = self.store.engine
        stamp = now()
        with engine.begin() as conn:
            row = conn.execute(select(send_locks_table).where(send_locks_table.c.issue_date == self.day)).first()
            if row is None:
                conn.execute(insert(send_locks_table).values(issue_date=self.day, owner=owner, heartbeat_at=stamp))
                return None
            age = (stamp - _utc(row.heartbeat_at)).total_seconds()
            if row.owner != owner and not is_dead(row.owner) and age < stale_after:
                return row.owner
            conn.execute(
                update(send_locks_table)
                .where(send_locks_table.c.issue_date == self.day, send_locks_table.c.owner == row.owner)
                .values(owner=owner, heartbeat_at=stamp)
            )
        return None

    def heartbeat(self, owner: str) -> None:
        """Show that ``owner`` is still alive."""
        with self.store.engine.begin() as conn:
            conn.execute(
                update(send_locks_table)
                .where(send_locks_table.c.issue_date == self.day, send_locks_table.c.owner == owner)
                .values(heartbeat_at=now())
            )

    def release(self, owner: str) -> None:
        """Give the lock up (only if ``owner`` still holds it)."""
        with self.store.engine.begin() as conn:
            conn.execute(
                send_locks_table.delete().where(
                    send_locks_table.c.issue_date == self.day, send_locks_table.c.owner == owner
                )
            )

    # ---------------------------------------------------------------- rows

    def _unsent_query(self, resend_unknown: bool):
        d = deliveries_table
        s = subscribers_table
        join = s.outerjoin(d, (d.c.subscriber_id == s.c.id) & (d.c.issue_date == self.day))
        unsent = d.c.status.is_(None)
        if resend_unknown:
            unsent = unsent | (d.c.status == UNKNOWN)
        return join, (s.c.status == ACTIVE) & unsent

    def count_unsent(self, resend_unknown: bool = False) -> int:
        """Return how many active readers have not been sent this issue."""
        join, where = self._unsent_query(resend_unknown)
        with self.store.reader.connect() as conn:
            return conn.scalar(select(func.count()).select_from(join).where(where))

    def iter_unsent(self, resend_unknown: bool = False, page: int = 1000) -> Iterator[Subscriber]:
        """Yield the active readers not yet sent this issue, in id order, one
        short read per page (so the rows written meanwhile are seen)."""
        join, where = self._unsent_query(resend_unknown)
        last_id = 0
        while True:
            query = (
                select(subscribers_table).select_from(join)
                .where(where, subscribers_table.c.id > last_id)
                .order_by(subscribers_table.c.id).limit(page)
            )
            with self.store.reader.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            for row in rows:
                yield _subscriber(row)
            last_id = rows[-1].id

    def mark_pending(self, subscriber_ids: Iterable[int]) -> None:
        """Write "pending" rows for these readers in one transaction, just
        before the provider is called (replacing an "unknown" being resent)."""
        ids = list(subscriber_ids)
        stamp = now()
        with self.store.engine.begin() as conn:
            conn.execute(
                deliveries_table.delete().where(
                    deliveries_table.c.issue_date == self.day,
                    deliveries_table.c.subscriber_id.in_(ids),
                    deliveries_table.c.status == UNKNOWN,
                )
            )
            conn.execute(
                insert(deliveries_table),
                [dict(issue_date=self.day, subscriber_id=i, status=PENDING, updated_at=stamp) for i in ids],
            )

    def record(self, results: Iterable[tuple[int, str, str | None, str | None]]) -> None:
        """Store (subscriber id, status, message id, reason) results in one
        transaction. A status of None removes the row: that reader was
        certainly not sent, and the next run sends to them."""
        stamp = now()
        kept = []
        dropped = []
        for subscriber_id, status, message_id, reason in results:
            if status is None:
                dropped.append(subscriber_id)
            else:
                kept.append(dict(sid=subscriber_id, st=status, mid=message_id, why=(reason or "")[:1000] or None))
        d = deliveries_table
        with self.store.engine.begin() as conn:
            if kept:
                conn.execute(
                    update(d)
                    .where(d.c.issue_date == self.day, d.c.subscriber_id == bindparam("sid"))
                    .values(status=bindparam("st"), message_id=bindparam("mid"), reason=bindparam("why"),
                            updated_at=stamp),
                    kept,
                )
            if dropped:
                conn.execute(d.delete().where(d.c.issue_date == self.day, d.c.subscriber_id.in_(dropped)))

    def resolve_abandoned(self) -> int:
        """Turn "pending" rows left by a run that died into "unknown" (its
        calls may or may not have gone out). Call only while holding the lock.
        Returns how many rows changed."""
        d = deliveries_table
        with self.store.engine.begin() as conn:
            return conn.execute(
                update(d)
                .where(d.c.issue_date == self.day, d.c.status == PENDING)
                .values(status=UNKNOWN, reason="the run sending it stopped before the outcome was known",
                        updated_at=now())
            ).rowcount

    def counts(self) -> dict[str, int]:
        """Return the number of ledger rows per status for this issue."""
        d = deliveries_table
        with self.store.reader.connect() as conn:
            rows = conn.execute(
                select(d.c.status, func.count()).where(d.c.issue_date == self.day).group_by(d.c.status)
            ).all()
        result = dict.fromkeys(DELIVERY_STATUSES, 0)
        result.update({status: count for status, count in rows})
        return result

    def rows(self, status: str | None = None) -> list[tuple[int, str, str | None, str | None]]:
        """Return (subscriber id, status, message id, reason) rows, by id."""
        d = deliveries_table
        query = select(d.c.subscriber_id, d.c.status, d.c.message_id, d.c.reason).where(d.c.issue_date == self.day)
        if status:
            query = query.where(d.c.status == status)
        with self.store.reader.connect() as conn:
            return [tuple(r) for r in conn.execute(query.order_by(d.c.subscriber_id))]

