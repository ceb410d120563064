"""The store: subscribers and their history, imports, stored issues, the
send ledger, SES feedback and the reader-action inbox, in one database.

:class:`Store` is the one object the rest of the package holds; each of its
parts lives in a module of its own (``subscribers``, ``imports``,
``issues``, ``inbox``, ``feedback``, ``stats``), over the engines of
``engine`` and the tables of ``schema``; ``papers``, ``profiles`` and
``picks`` keep what personal picks need, ``reader_models`` each reader's
model of their votes and the votes they forgot; ``search`` searches the papers; ``admins`` the
dashboard's operators, their sessions and login attempts, and ``dashboard`` its queries.
:class:`Ledger` is the send ledger
and lock of one issue. ``migrate`` brings a database to this release's
schema when it is opened (Alembic, ``migrations/``); ``backup`` copies and
restores SQLite databases.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from newsletter.core.errors import StoreError
from newsletter.store.admins import Admins
from newsletter.store.dashboard import DashboardQueries, EditionTotals
from newsletter.store.engine import Database, now
from newsletter.store.feedback import FeedbackRecords
from newsletter.store.imports import ImportReport, Imports
from newsletter.store.inbox import (
    ActionLimits,
    ActionPayload,
    ConfirmPayload,
    FetchPaperPayload,
    ForgetVotesPayload,
    Inbox,
    PreferencesPayload,
    ReaderAction,
    ResubscribePayload,
    SignupPayload,
    UnsubscribePayload,
    VotePayload,
)
from newsletter.store.issues import IssueArchive, StoredIssue
from newsletter.store.ledger import Ledger
from newsletter.store.papers import PaperArchive
from newsletter.store.picks import PickRecords
from newsletter.store.profiles import Profiles, Vote
from newsletter.store.reader_models import Forgotten, ReaderModels, StoredModel
from newsletter.store.schema import MAX_ID
from newsletter.store.search import Appearance, PaperSearch, SearchHit, SearchPage
from newsletter.store.stats import StatsQueries
from newsletter.store.subscribers import Subscribers, normalize_email

__all__ = ["MAX_ID", "ActionLimits", "ActionPayload", "Appearance", "ConfirmPayload", "EditionTotals",
           "FetchPaperPayload", "ForgetVotesPayload", "Forgotten",
           "ImportReport", "Ledger", "PreferencesPayload", "ReaderAction", "ResubscribePayload",
           "SearchHit", "SearchPage", "SignupPayload", "Store", "StoredIssue", "StoredModel", "UnsubscribePayload", "Vote",
           "VotePayload", "normalize_email", "now", "open_store"]


class Store(Subscribers, Imports, IssueArchive, PaperArchive, PaperSearch, Profiles, ReaderModels, PickRecords, Inbox,
            FeedbackRecords, StatsQueries, DashboardQueries, Admins, Database):
    """Subscribers, their events, stored issues and papers (searchable), the
    ledger's tables, SES feedback, the reader-action inbox and the
    dashboard's operators of one
    database."""


def open_store(database_url: str, create: bool = True) -> Store:
    """Return a :class:`Store` for ``database_url``, creating the database
    when there is none only with ``create``; raises :class:`StoreError`
    (:class:`DatabaseMissing` when there is none and not ``create``)."""
    try:
        return Store(database_url, create)
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc.__class__.__name__}") from exc
