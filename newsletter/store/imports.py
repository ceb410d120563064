"""Importing many subscribers at once, all or nothing, holding the database
for as short a time as possible."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Iterable, Iterator

from sqlalchemy import (
    Column,
    MetaData,
    Table,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    true,
)
from sqlalchemy.exc import SQLAlchemyError

from newsletter.core.errors import InvalidEmail, StoreError
from newsletter.core.models import DEFAULT_PICKS, Profile, SubscriberRow, SubscriberStatus
from newsletter.store.engine import dialect_insert
from newsletter.store.profiles import profile_lists, schedule_columns
from newsletter.store.schema import events_table, profiles_table, subscribers_table
from newsletter.store.subscribers import normalize_email
from newsletter.core.text import clean_name


@dataclass
class ImportReport:
    """What ``import_subscribers`` did, line by line."""

    added: list[int] = field(default_factory=list)
    present: list[int] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line, status)
    write_seconds: float = 0.0  # how long the import held the database for writing


class Imports:
    """The import part of :class:`newsletter.store.Store`."""

    def import_subscribers(self, rows: Iterable[SubscriberRow], source: str = "import", *,
                           reason: str = "subscribed", dry_run: bool = False) -> ImportReport:
        """Add the readers of ``rows``, all or nothing, with the interests
        and authors of their row (cut to the limits of
        ``newsletter.picks.interests``) and its schedule.

        Addresses already present are counted, never reactivated (those
        unsubscribed, bounced or complained are reported as refused);
        malformed addresses and schedules are reported with their line
        (the error as it was read). Everything is
        checked and prepared first, without holding the database; then the
        new addresses are written in bulk in one short transaction (its
        duration is ``write_seconds`` in the report), so readers'
        unsubscribes wait as little as possible. A new reader's interests,
        authors and schedule are theirs from that same write; an address
        already present keeps its profile and schedule. An address that someone else
        added in the meantime is reported as present (or refused).
        Each new reader's first event has ``source`` and ``reason``. With
        ``dry_run``, nothing is written: the report says what the import
        would do now.
        Raises :class:`StoreError` when the write fails (nothing is imported).
        """
        report = ImportReport()
        # Per address, as little as possible: a file can hold a million rows.
        first: dict[str, int] = {}  # lower-cased address -> the line it first appears on
        again: list[tuple[int, str]] = []  # (line, lower-cased address) of each later appearance
        # lower-cased address -> its first row, the address normalized; a dry run needs none
        details: dict[str, SubscriberRow] = {}
        for row in rows:
            try:
                address = normalize_email(row.email)
            except InvalidEmail as exc:
                report.invalid.append((row.line, str(exc)))
                continue
            if row.schedule_error:
                report.invalid.append((row.line, row.schedule_error))
                continue
            key = address.lower()
            if key in first:
                again.append((row.line, key))
                continue
            first[key] = row.line
            if not dry_run:
                details[key] = replace(row, email=address)
        statuses = self._statuses(list(first))
        new = [key for key in first if key not in statuses]
        if dry_run:
            added = set(new)
        else:
            added = self._bulk_add(self._staged(new, details, source), self._profiles(new, details),
                                   report, reason) if new else set()
        if len(added) < len(new):  # someone else added some of them meanwhile
            statuses.update(self._statuses([key for key in new if key not in added]))
        for key, line in first.items():
            status = statuses.get(key)
            if status is None:
                report.added.append(line)
            elif status == SubscriberStatus.ACTIVE:
                report.present.append(line)
            else:
                report.refused.append((line, status))
        for line, key in again:
            status = statuses.get(key, SubscriberStatus.ACTIVE)
            (report.present.append(line) if status == SubscriberStatus.ACTIVE else report.refused.append((line, status)))
        report.added.sort()
        report.present.sort()
        report.refused.sort()
        return report

    def _staged(self, keys: list[str], details: dict[str, SubscriberRow], source: str) -> Iterator[dict]:
        """The subscriber rows to add for ``keys`` (made one at a time, as
        they are written to the staging table)."""
        stamp = self.clock()
        for key in keys:
            row = details[key]
            yield dict(ref=secrets.token_urlsafe(16), email=row.email, email_key=key, name=clean_name(row.name),
                       status=SubscriberStatus.ACTIVE, source=source, created_at=stamp, updated_at=stamp,
                       **schedule_columns(row.schedule))

    @staticmethod
    def _profiles(keys: list[str], details: dict[str, SubscriberRow]) -> Iterator[dict]:
        """The profiles (email_key, lists) of those of ``keys`` who have one."""
        for key in keys:
            row = details[key]
            if row.interests or row.authors:
                yield dict(email_key=key, lists=profile_lists(Profile(0, interests=row.interests, authors=row.authors)))

    def _statuses(self, keys: list[str], chunk: int = 500) -> dict[str, str]:
        """Return {email key: status} for those of ``keys`` on the list."""
        found: dict[str, str] = {}
        s = subscribers_table
        with self.reader.connect() as conn:
            for start in range(0, len(keys), chunk):
                part = keys[start:start + chunk]
                found.update(conn.execute(select(s.c.email_key, s.c.status).where(s.c.email_key.in_(part))).all())
        return found

    def _bulk_add(self, staged: Iterable[dict], profiles: Iterable[dict], report: ImportReport, reason: str,
                  chunk: int = 20_000) -> set[str]:
        """Insert the ``staged`` subscriber rows (and an event for each, with
        ``reason``, and the ``profiles`` of those that have one: email_key,
        interests, authors) in one transaction; skip addresses present by
        then. Returns the email keys added; sets ``report.write_seconds``.

        The rows go first into temporary tables of this connection, which
        need no lock on the database; the write transaction then copies
        them with INSERT ... SELECT statements, which is what keeps it
        short (a 100,000-row file: well under a second).
        """
        s, e, p = subscribers_table, events_table, profiles_table
        staging = Table("import_staging", MetaData(), *(Column(c.name, c.type) for c in s.columns if c.name != "id"),
                        prefixes=["TEMPORARY"])
        staged_profiles = Table("import_profiles", MetaData(), Column("email_key", s.c.email_key.type),
                                Column("lists", p.c.lists.type), prefixes=["TEMPORARY"])
        columns = [c.name for c in staging.columns]
        with self.reader.connect() as conn:
            try:
                with conn.begin():  # only the connection's own temporary tables: no lock on the database
                    conn.exec_driver_sql("DROP TABLE IF EXISTS import_staging")
                    conn.exec_driver_sql("DROP TABLE IF EXISTS import_profiles")
                    staging.create(conn)
                    staged_profiles.create(conn)
                    for part in _chunks(staged, chunk):
                        conn.execute(insert(staging), part)
                    with_profiles = False
                    for part in _chunks(profiles, chunk):
                        conn.execute(insert(staged_profiles), part)
                        with_profiles = True
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
                    copy = dialect_insert(conn, s).from_select(columns, select(*staging.columns).where(true()))
                    conn.execute(copy.on_conflict_do_nothing(index_elements=[s.c.email_key]))
                    conn.execute(insert(e).from_select(
                        ["subscriber_id", "at", "old_status", "new_status", "source", "reason"],
                        select(s.c.id, s.c.created_at, null(), s.c.status, s.c.source, literal(reason[:1000]))
                        .where(s.c.id > last_id),
                    ))
                    if with_profiles:
                        conn.execute(insert(p).from_select(
                            ["subscriber_id", "lists", "picks", "updated_at"],
                            select(s.c.id, staged_profiles.c.lists, literal_column(str(DEFAULT_PICKS)), s.c.created_at)
                            .select_from(s.join(staged_profiles, staged_profiles.c.email_key == s.c.email_key))
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
                    conn.exec_driver_sql("DROP TABLE IF EXISTS import_profiles")
        return added


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """``rows`` in lists of at most ``size``."""
    rows = iter(rows)
    while part := list(islice(rows, size)):
        yield part
