"""The subscriber store: subscribers, their status history, and rendered issues.

SQLAlchemy Core over the embedded SQLite database by default, or PostgreSQL
for deployments where the web app and the sender run on different hosts; the
same code serves both. Every status change is a conditional UPDATE plus an
event row in one transaction, so concurrent writers (the web app and a cron
send) cannot lose or duplicate a change, and a person can always answer "why
did this reader stop getting mail?".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import time
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
    literal,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from newsletter.errors import InvalidEmail, StoreBusy, StoreError
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

# Reader actions from the web (sign-ups, confirmations, unsubscribes,
# resubscribes), recorded before anything else is done with them: an action
# is never lost, even while a long operation (an import, a migration) holds
# the database. They are applied at once when the database allows, else as
# soon as it is free (see newsletter.actions). With SQLite this table lives in
# a file of its own beside the database, so recording one never waits for
# the database's single writer; with PostgreSQL it is a table like the others.
inbox_metadata = MetaData()

actions_table = Table(
    "reader_actions",
    inbox_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # signup, confirm, unsubscribe, resubscribe
    Column("subscriber_id", Integer, index=True),  # the reader acted upon, when known
    Column("email_key", String(320), index=True),  # sign-up and confirm: the lower-cased address
    Column("client", String(64), index=True),  # sign-up: the client address that asked
    Column("payload", Text, nullable=False),  # JSON: what the action needs (name, source, ...)
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("done_at", DateTime(timezone=True), index=True),  # None while still to apply
    Column("claimed_until", DateTime(timezone=True)),  # someone is applying it until then
    Column("not_before", DateTime(timezone=True)),  # retry later (a failed confirmation email)
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome", String(300)),
)


@dataclass(frozen=True)
class ReaderAction:
    """One recorded reader action (see ``actions_table``)."""

    id: int
    kind: str
    subscriber_id: int | None
    email_key: str | None
    client: str | None
    payload: dict
    received_at: dt.datetime
    attempts: int


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
    write_seconds: float = 0.0  # how long the import held the database for writing


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


# How long a reader's action waits for the database before it is left to
# the worker (the reader is answered within two seconds whatever holds it).
QUICK_WAIT_SECONDS = 1.0
# How long one caller may take to apply a reader action before another may.
CLAIM_SECONDS = 30.0
# PostgreSQL advisory lock taken while a sign-up is counted and recorded.
SIGNUP_LOCK_KEY = 0x6E6C5349474E  # "nlSIGN"
BUSY_TIMEOUT_SECONDS = 15.0


def _sqlite_engine(url, begin: str, busy_seconds: float = BUSY_TIMEOUT_SECONDS) -> Engine:
    """An engine whose transactions start with ``BEGIN <begin>`` and whose
    connections wait up to ``busy_seconds`` for another writer."""
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")  # wait for a writer instead of failing
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A connection may ask for another mode (see Store.import_subscribers).
        connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get('sqlite_begin', begin)}")

    return engine


def _inbox_url(url):
    """The SQLite file of the reader-action inbox, beside the database file
    (``subscribers/newsletter.db`` → ``subscribers/newsletter.inbox.db``)."""
    path = Path(url.database)
    return url.set(database=str(path.with_name(f"{path.stem}.inbox{path.suffix or '.db'}")))


def _dialect_insert(conn: Connection, table: Table):
    """An INSERT of the connection's dialect (for ON CONFLICT clauses)."""
    if conn.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def _is_busy(exc: OperationalError) -> bool:
    """Whether ``exc`` means another writer held the database too long
    (SQLite's "database is locked", PostgreSQL's lock timeout)."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "lock timeout" in text or "busy" in text


def reader_may_reactivate(status: str | None, last_source: str | None) -> bool:
    """Whether the reader themself may make an address active (by signing
    up, confirming or resubscribing): a new address (``status`` None) or one
    that unsubscribed itself (its last change came from the reader). Never
    one the operator removed, nor one that bounced or complained."""
    return status is None or (status == UNSUBSCRIBED and last_source in READER_SOURCES)


def _last_source(conn: Connection, subscriber_id: int) -> str | None:
    """The source of the subscriber's latest status change."""
    e = events_table
    return conn.scalar(select(e.c.source).where(e.c.subscriber_id == subscriber_id).order_by(e.c.id.desc()).limit(1))


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
                self._quick = _sqlite_engine(url, "IMMEDIATE", busy_seconds=QUICK_WAIT_SECONDS)
                in_memory = not url.database or url.database == ":memory:"
                self.inbox = self.engine if in_memory else _sqlite_engine(_inbox_url(url), "IMMEDIATE")
            else:
                self.engine = self.reader = self._quick = self.inbox = create_engine(url, pool_pre_ping=True)
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
        for schema, engine in ((metadata, self.engine), (inbox_metadata, self.inbox)):
            try:
                schema.create_all(engine)
            except (IntegrityError, OperationalError):  # another process created them at the same moment
                schema.create_all(engine)
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
        for name in ("engine", "reader", "_quick", "inbox"):
            engine = getattr(self, name, None)
            if engine is not None:
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
        before sending, so a reader who left a moment ago gets nothing, even
        one whose unsubscribe is recorded but not yet applied)."""
        ids = list(ids)
        if not ids:
            return set()
        with self.reader.connect() as conn:
            active = set(conn.scalars(
                select(subscribers_table.c.id).where(
                    subscribers_table.c.id.in_(ids), subscribers_table.c.status == ACTIVE
                )
            ))
        # An unsubscribe recorded while the database was held counts already.
        return active - self._pending_unsubscribes(list(active)) if active else active

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

    @contextlib.contextmanager
    def _writing(self, quick: bool = False) -> Iterator[Connection]:
        """A write transaction. With ``quick``, it waits at most
        :data:`QUICK_WAIT_SECONDS` for the database (held by a long import or
        a migration) and then raises :class:`StoreBusy`; otherwise it waits
        up to the busy timeout."""
        engine = self._quick if quick else self.engine
        try:
            with engine.begin() as conn:
                if quick and engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(QUICK_WAIT_SECONDS * 1000)}ms'")
                yield conn
        except OperationalError as exc:
            if quick and _is_busy(exc):
                raise StoreBusy("the database is busy with a long operation") from exc
            raise

    def unsubscribe(self, ref: str, *, source: str, reason: str, quick: bool = False) -> tuple[Subscriber | None, bool]:
        """Unsubscribe the active reader with ``ref``. Idempotent.

        Returns (subscriber or None when unknown, whether anything changed).
        A bounced or complained reader stays as they are. Raises
        :class:`StoreBusy` when ``quick`` and the database is held.
        """
        found = self.get(ref=ref)
        if not found:
            return None, False
        with self._writing(quick) as conn:
            changed = _change_status(conn, found.id, UNSUBSCRIBED, source, reason, (ACTIVE,))
        return self.get(ref=ref), changed

    def resubscribe(self, ref: str, *, source: str = "web", quick: bool = False) -> tuple[Subscriber | None, bool]:
        """Reactivate the reader with ``ref`` if they unsubscribed themself
        (:func:`reader_may_reactivate`), deciding inside the transaction.

        An address unsubscribed by the operator, bounced or complained is
        left alone. Returns (subscriber or None, whether anything changed).
        Raises :class:`StoreBusy` when ``quick`` and the database is held.
        """
        found = self.get(ref=ref)
        if not found:
            return None, False
        with self._writing(quick) as conn:
            status = conn.scalar(select(subscribers_table.c.status).where(subscribers_table.c.id == found.id))
            changed = reader_may_reactivate(status, _last_source(conn, found.id)) and _change_status(
                conn, found.id, ACTIVE, source, "resubscribed by the reader", (UNSUBSCRIBED,)
            )
        return self.get(ref=ref), changed

    def signup_state(self, email: str) -> tuple[Subscriber | None, bool]:
        """Return (the subscriber with ``email`` or None, whether a sign-up
        may make the address active now: see :func:`reader_may_reactivate`)."""
        found = self.get(email=email)
        if found is None:
            return None, True
        with self.reader.connect() as conn:
            return found, reader_may_reactivate(found.status, _last_source(conn, found.id))

    def confirm_signup(self, email: str, name: str | None, quick: bool = False) -> str:
        """Make ``email`` active after its confirmation link was used, with
        the rules of a new sign-up checked at this moment, inside the
        transaction: a new address is added, one that unsubscribed itself is
        reactivated; one the operator removed, or that bounced or complained
        since, is refused.

        Returns "subscribed", "resubscribed", "already" (active) or
        "refused". Raises :class:`StoreBusy` when ``quick`` and the database
        is held.
        """
        address = normalize_email(email)
        key = address.lower()
        with self._writing(quick) as conn:
            row = conn.execute(
                select(subscribers_table.c.id, subscribers_table.c.status).where(subscribers_table.c.email_key == key)
            ).first()
            if row is None:
                self._insert_subscriber(conn, address, name, "signup")
                return "subscribed"
            if row.status == ACTIVE:
                return "already"
            if not reader_may_reactivate(row.status, _last_source(conn, row.id)):
                return "refused"
            _change_status(conn, row.id, ACTIVE, "signup", "confirmed a new sign-up", (UNSUBSCRIBED,))
            return "resubscribed"

    def import_subscribers(self, rows: Iterable[tuple[int, str, str | None]], source: str = "import") -> ImportReport:
        """Add the (line, email, name) rows, all or nothing.

        Addresses already present are counted, never reactivated (those
        unsubscribed, bounced or complained are reported as refused);
        malformed addresses are reported with their line. Everything is
        checked and prepared first, without holding the database; then the
        new addresses are written in bulk in one short transaction (its
        duration is ``write_seconds`` in the report), so readers'
        unsubscribes wait as little as possible. An address that someone
        else added in the meantime is reported as present (or refused).
        Raises :class:`StoreError` when the write fails (nothing is imported).
        """
        report = ImportReport()
        lines: dict[str, list[int]] = {}  # lower-cased address -> its lines in the file, first first
        new: dict[str, tuple[str, str | None]] = {}  # key -> (address, name) of first appearance
        for line, email, name in rows:
            try:
                address = normalize_email(email)
            except InvalidEmail as exc:
                report.invalid.append((line, str(exc)))
                continue
            key = address.lower()
            lines.setdefault(key, []).append(line)
            new.setdefault(key, (address, name))
        statuses = self._statuses(list(new))
        stamp = now()
        staged = [
            dict(ref=secrets.token_urlsafe(16), email=address, email_key=key,
                 name=clean_name(name), status=ACTIVE, source=source,
                 created_at=stamp, updated_at=stamp)
            for key, (address, name) in new.items() if key not in statuses
        ]
        added = self._bulk_add(staged, report) if staged else set()
        if len(added) < len(staged):  # someone else added some of them meanwhile
            statuses.update(self._statuses([row["email_key"] for row in staged if row["email_key"] not in added]))
        for key, at in lines.items():
            first = [] if key in statuses else at[:1]
            report.added.extend(first)
            status = statuses.get(key, ACTIVE)
            for line in at[len(first):]:
                (report.present.append(line) if status == ACTIVE else report.refused.append((line, status)))
        report.added.sort()
        report.present.sort()
        report.refused.sort()
        return report

    def _statuses(self, keys: list[str], chunk: int = 500) -> dict[str, str]:
        """Return {email key: status} for those of ``keys`` on the list."""
        found: dict[str, str] = {}
        s = subscribers_table
        with self.reader.connect() as conn:
            for start in range(0, len(keys), chunk):
                part = keys[start:start + chunk]
                found.update(conn.execute(select(s.c.email_key, s.c.status).where(s.c.email_key.in_(part))).all())
        return found

    def _bulk_add(self, staged: list[dict], report: ImportReport, chunk: int = 20_000) -> set[str]:
        """Insert the ``staged`` subscriber rows (and a "subscribed" event for
        each) in one transaction; skip addresses present by then. Returns the
        email keys added; sets ``report.write_seconds``.

        The rows go first into a temporary table of this connection, which
        needs no lock on the database; the write transaction then copies
        them with two INSERT ... SELECT statements, which is what keeps it
        short (a 100,000-row file: well under a second).
        """
        s, e = subscribers_table, events_table
        staging = Table("import_staging", MetaData(), *(Column(c.name, c.type) for c in s.columns if c.name != "id"),
                        prefixes=["TEMPORARY"])
        columns = [c.name for c in staging.columns]
        with self.reader.connect() as conn:
            try:
                with conn.begin():  # only the connection's own temporary table: no lock on the database
                    conn.exec_driver_sql("DROP TABLE IF EXISTS import_staging")
                    staging.create(conn)
                    for start in range(0, len(staged), chunk):
                        conn.execute(insert(staging), staged[start:start + chunk])
                started = time.monotonic()
                with conn.execution_options(sqlite_begin="IMMEDIATE").begin():
                    if conn.dialect.name == "postgresql":
                        # Other writers wait (briefly) so that the new ids are all ours.
                        conn.exec_driver_sql("LOCK TABLE subscribers IN SHARE ROW EXCLUSIVE MODE")
                    last_id = conn.scalar(select(func.coalesce(func.max(s.c.id), 0)))
                    if conn.dialect.name == "sqlite":
                        # A large page cache for this write: the unique indexes of a
                        # big import do not fit in the default 2 MB.
                        conn.exec_driver_sql("PRAGMA cache_size = -262144")
                    copy = _dialect_insert(conn, s).from_select(columns, select(*staging.columns).where(true()))
                    conn.execute(copy.on_conflict_do_nothing(index_elements=[s.c.email_key]))
                    conn.execute(insert(e).from_select(
                        ["subscriber_id", "at", "old_status", "new_status", "source", "reason"],
                        select(s.c.id, s.c.created_at, null(), s.c.status, s.c.source, literal("subscribed"))
                        .where(s.c.id > last_id),
                    ))
                    new_last_id = conn.scalar(select(func.max(s.c.id)))
                report.write_seconds = time.monotonic() - started
                with conn.execution_options(sqlite_begin="DEFERRED").begin():
                    added = set(conn.scalars(select(s.c.email_key).where(s.c.id > last_id, s.c.id <= new_last_id)))
            except SQLAlchemyError as exc:
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise StoreError(f"the import failed and nothing was imported: {reason}") from exc
            finally:
                if conn.in_transaction():
                    conn.rollback()
                with conn.execution_options(sqlite_begin="DEFERRED").begin():
                    conn.exec_driver_sql("DROP TABLE IF EXISTS import_staging")
        return added

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

    def feedback_counts(self, issue_dates: Iterable[str]) -> dict[str, dict[str, int]]:
        """Return {issue date: {kind: recipients}} for feedback about the
        issues dated ``issue_dates`` (YYYY-MM-DD); bounces count only
        permanent ones, as SES's bounce rate does."""
        dates = list(issue_dates)
        if not dates:
            return {}
        f = feedback_table
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(f.c.issue_date, f.c.kind, func.count(func.distinct(f.c.email_key)))
                .where(f.c.issue_date.in_(dates))
                .where((f.c.kind != "bounce") | (f.c.bounce_type == "Permanent"))
                .group_by(f.c.issue_date, f.c.kind)
            ).all()
        result: dict[str, dict[str, int]] = {}
        for issue_date, kind, count in rows:
            result.setdefault(issue_date, {})[kind] = count
        return result

    def delivery_totals(self, since: dt.datetime) -> dict[str, tuple[dt.datetime, dict[str, int]]]:
        """Return {issue date: (when its send began, {ledger status: readers})}
        for every issue sent at ``since`` or later, whatever its date: an
        issue counts when a ledger row of it was written since then, and its
        figures cover all its readers. "When its send began" is the earliest
        ledger write of the issue, in UTC."""
        d = deliveries_table
        # Stored times are UTC; SQLite compares them as naive text.
        since = since.astimezone(dt.timezone.utc)
        recent = select(d.c.issue_date).where(d.c.updated_at >= since).distinct()
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(d.c.issue_date, d.c.status, func.count(), func.min(d.c.updated_at))
                .where(d.c.issue_date.in_(recent))
                .group_by(d.c.issue_date, d.c.status)
            ).all()
        result: dict[str, tuple[dt.datetime, dict[str, int]]] = {}
        for issue_date, status, count, first in rows:
            began, totals = result.get(issue_date, (_utc(first), {}))
            totals[status] = count
            result[issue_date] = (min(began, _utc(first)), totals)
        return result

    def reader_unsubscribes(self, since: dt.datetime) -> list[dt.datetime]:
        """Return when readers unsubscribed themselves (web or one-click) since ``since``, in UTC."""
        e = events_table
        since = since.astimezone(dt.timezone.utc)  # stored times are UTC
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(e.c.at).where(
                    e.c.new_status == UNSUBSCRIBED, e.c.source.in_(READER_SOURCES), e.c.at >= since
                )
            ).all()
        return [_utc(row.at) for row in rows]

    # ---------------------------------------------------------------- reader actions

    def record_action(self, kind: str, *, subscriber_id: int | None = None, email: str | None = None,
                      payload: dict | None = None, claim: bool = False) -> int:
        """Record a reader action to apply (see ``actions_table``) and return
        its id. With ``claim``, the caller is the one to apply it, for the
        next :data:`CLAIM_SECONDS` (then anyone may)."""
        stamp = now()
        with self.inbox.begin() as conn:
            return conn.execute(insert(actions_table).values(
                kind=kind, subscriber_id=subscriber_id, email_key=email.lower() if email else None,
                payload=json.dumps(payload or {}), received_at=stamp, attempts=0,
                claimed_until=stamp + dt.timedelta(seconds=CLAIM_SECONDS) if claim else None,
            )).inserted_primary_key[0]

    def record_signup(self, email: str, name: str | None, client: str, *, per_address_per_day: int,
                      per_client_per_hour: int) -> bool:
        """Record a sign-up request for ``email`` from ``client`` unless it
        would exceed a limit: at most ``per_address_per_day`` requests per
        address in 24 hours and ``per_client_per_hour`` per client in an
        hour. Counting and recording are one atomic step (one writer at a
        time), so parallel requests cannot exceed a limit. Returns whether
        it was recorded. ``client`` is kept to its first 64 characters."""
        key = email.strip().lower()
        client = client[:64]
        a = actions_table
        stamp = now()
        with self.inbox.begin() as conn:
            if conn.dialect.name == "postgresql":
                # SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SIGNUP_LOCK_KEY})")
            signups = select(func.count()).select_from(a).where(a.c.kind == "signup")
            if conn.scalar(signups.where(a.c.email_key == key,
                                         a.c.received_at >= stamp - dt.timedelta(days=1))) >= per_address_per_day:
                return False
            if conn.scalar(signups.where(a.c.client == client,
                                         a.c.received_at >= stamp - dt.timedelta(hours=1))) >= per_client_per_hour:
                return False
            conn.execute(insert(a).values(kind="signup", email_key=key, client=client, received_at=stamp, attempts=0,
                                          payload=json.dumps({"email": email.strip(), "name": name})))
        return True

    def count_signups(self, *, email: str | None = None, client: str | None = None,
                      since: dt.datetime) -> int:
        """Return how many sign-up requests were recorded for ``email`` (or
        from ``client``) since ``since``. ``client`` is compared as
        :meth:`record_signup` stores it (its first 64 characters)."""
        a = actions_table
        query = select(func.count()).select_from(a).where(a.c.kind == "signup", a.c.received_at >= since)
        if email is not None:
            query = query.where(a.c.email_key == email.strip().lower())
        if client is not None:
            query = query.where(a.c.client == client[:64])
        with self.inbox.connect() as conn:
            return conn.scalar(query)

    def due_actions(self, kinds: Iterable[str], limit: int = 100) -> list[ReaderAction]:
        """Return up to ``limit`` actions of ``kinds`` still to apply that no
        one is applying and that are not waiting for a retry, oldest first."""
        a = actions_table
        stamp = now()
        query = (
            select(a).where(a.c.done_at.is_(None), a.c.kind.in_(list(kinds)),
                            a.c.claimed_until.is_(None) | (a.c.claimed_until < stamp),
                            a.c.not_before.is_(None) | (a.c.not_before <= stamp))
            .order_by(a.c.id).limit(limit)
        )
        with self.inbox.connect() as conn:
            rows = conn.execute(query).all()
        return [
            ReaderAction(id=r.id, kind=r.kind, subscriber_id=r.subscriber_id, email_key=r.email_key, client=r.client,
                         payload=json.loads(r.payload), received_at=_utc(r.received_at), attempts=r.attempts)
            for r in rows
        ]

    def claim_action(self, action_id: int) -> bool:
        """Make this caller the one applying the action, for the next
        :data:`CLAIM_SECONDS`; False when it is done or someone else has it."""
        a = actions_table
        stamp = now()
        with self.inbox.begin() as conn:
            return bool(conn.execute(
                update(a).where(a.c.id == action_id, a.c.done_at.is_(None),
                                a.c.claimed_until.is_(None) | (a.c.claimed_until < stamp))
                .values(claimed_until=stamp + dt.timedelta(seconds=CLAIM_SECONDS))
            ).rowcount)

    def finish_action(self, action_id: int, outcome: str) -> None:
        """Mark the action applied, with what came of it."""
        with self.inbox.begin() as conn:
            conn.execute(update(actions_table).where(actions_table.c.id == action_id)
                         .values(done_at=now(), claimed_until=None, outcome=outcome[:300]))

    def release_action(self, action_id: int, retry_in: float = 0.0, outcome: str | None = None) -> None:
        """Give a claimed action back, to be applied again in ``retry_in``
        seconds (counted as a failed attempt when ``retry_in`` > 0)."""
        a = actions_table
        values = dict(claimed_until=None, not_before=now() + dt.timedelta(seconds=retry_in) if retry_in else None)
        if retry_in:
            values.update(attempts=a.c.attempts + 1, outcome=(outcome or "")[:300] or None)
        with self.inbox.begin() as conn:
            conn.execute(update(a).where(a.c.id == action_id).values(**values))

    def has_earlier_pending(self, action_id: int, *, subscriber_id: int | None = None,
                            email: str | None = None) -> bool:
        """Whether an action older than ``action_id`` about the same reader
        (or address) is still to apply: actions about one reader are applied
        in the order they arrived."""
        a = actions_table
        target = a.c.subscriber_id == subscriber_id if subscriber_id is not None else a.c.email_key == email.lower()
        with self.inbox.connect() as conn:
            return conn.scalar(select(func.count()).select_from(a).where(
                target, a.c.id < action_id, a.c.done_at.is_(None), a.c.kind != "signup")) > 0

    def pending_status(self, subscriber_id: int) -> str | None:
        """The status the reader's latest unapplied unsubscribe (or
        resubscribe) will give them, or None when there is none."""
        a = actions_table
        with self.inbox.connect() as conn:
            kind = conn.scalar(select(a.c.kind).where(
                a.c.subscriber_id == subscriber_id, a.c.done_at.is_(None),
                a.c.kind.in_(("unsubscribe", "resubscribe"))).order_by(a.c.id.desc()).limit(1))
        return {"unsubscribe": UNSUBSCRIBED, "resubscribe": ACTIVE}.get(kind)

    def _pending_unsubscribes(self, ids: list[int]) -> set[int]:
        """Those of ``ids`` with an unsubscribe recorded but not yet applied."""
        a = actions_table
        with self.inbox.connect() as conn:
            return set(conn.scalars(select(a.c.subscriber_id).where(
                a.c.subscriber_id.in_(ids), a.c.kind == "unsubscribe", a.c.done_at.is_(None))))

    def purge_actions(self, older_than: dt.timedelta = dt.timedelta(days=2)) -> int:
        """Delete applied actions older than ``older_than`` (at least a day:
        sign-ups count towards the daily limit). Returns how many."""
        a = actions_table
        before = now() - max(older_than, dt.timedelta(days=1))
        with self.inbox.begin() as conn:
            return conn.execute(a.delete().where(a.c.done_at.is_not(None), a.c.received_at < before)).rowcount

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

