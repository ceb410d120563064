"""The tables: subscribers and their events, stored issues, the send ledger
and its locks, SES feedback, papers, profiles, votes and picks, the
dashboard's operators and what it keeps counted, and the reader-action
inbox.

``metadata`` is the database's schema; ``inbox_metadata`` the inbox's, which
lives in a file of its own with SQLite (see ``newsletter.store.engine``).

``metadata`` must equal what the migrations in ``migrations/versions`` build
(tests/test_migrations.py checks it): a change here needs a new revision
(see ``newsletter.store.migrate``). The inbox is not migrated: it is a
queue, created on first use.
"""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    event,
    func,
)

# Written to newsletter_meta by the migrations. Release 1 (before
# migrations) refuses a database whose version is above 1; later releases
# read alembic_version instead.
SCHEMA_VERSION = 13

metadata = MetaData()

meta_table = Table(
    "newsletter_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

# The highest id a row can have: ids are Integer columns, PostgreSQL's
# 32-bit integer (SQLite's hold 64 bits, but ids count up from 1).
MAX_ID = 2**31 - 1

subscribers_table = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Opaque, random: what signed links carry instead of the address.
    Column("ref", String(32), nullable=False, unique=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),  # lower-cased
    Column("name", String(200)),
    Column("status", String(16), nullable=False),
    Column("source", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # When they get the newsletter (see models.Schedule): daily or weekly,
    # the weekday of a weekly reader (0 Monday; None: the list's default),
    # and no edition dated before paused_until (YYYY-MM-DD).
    Column("frequency", String(8), nullable=False, default="daily", server_default="daily"),
    Column("weekday", Integer),
    Column("paused_until", String(10)),
    # The dashboard's list: each filter with the id after it, so that a page
    # (WHERE filter AND id > last ORDER BY id LIMIT n) is one index range.
    Index("ix_subscribers_status_id", "status", "id"),
    Index("ix_subscribers_frequency_id", "frequency", "id"),
    Index("ix_subscribers_source_id", "source", "id"),
)
# The dashboard's search: names starting with the text typed, in any case
# (text_pattern_ops: PostgreSQL's LIKE 'x%' can use it whatever the
# database's collation). On PostgreSQL, addresses starting with it too
# (SQLite's unique index on email_key serves that search as a range);
# 0005 creates this one on PostgreSQL only. Both are expressions, which
# SQLAlchemy cannot read back from SQLite, so schema comparisons there
# leave them out.
Index("ix_subscribers_name_prefix", func.lower(subscribers_table.c.name).label("name_lower"),
      postgresql_ops={"name_lower": "text_pattern_ops"})
Index("ix_subscribers_email_prefix", func.lower(subscribers_table.c.email_key).label("email_lower"),
      postgresql_ops={"email_lower": "text_pattern_ops"})

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
    # The dashboard's charts count the changes of each day of a period.
    Index("ix_subscriber_events_at", "at"),
    # Readers' own unsubscribes after each edition, read from this index alone.
    Index("ix_subscriber_events_status_source_at", "new_status", "source", "at"),
)

# One row per edition (see models.Edition): its date and kind.
issues_table = Table(
    "issues",
    metadata,
    Column("date", String(10), primary_key=True),  # YYYY-MM-DD
    Column("kind", String(8), primary_key=True),  # daily, weekly
    Column("subject", String(300), nullable=False),
    Column("preheader", String(300), nullable=False),
    Column("paper_count", Integer, nullable=False),
    Column("web_html", Text, nullable=False),  # no personal link in it
    Column("text", Text, nullable=False),
    # A weekly edition's papers, in its order, as a JSON list of keys (a
    # daily edition's are its day's appearances).
    Column("paper_keys", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # When a send of it last ended with no active reader left waiting.
    Column("finished_at", DateTime(timezone=True)),
    # When it went on the public archive and feed (a send began, or
    # `newsletter publish`); None: stored, not shown (rendered, a dry run).
    Column("published_at", DateTime(timezone=True)),
)


# The send ledger: one row per (edition, subscriber), with a DeliveryStatus;
# ``issue_date`` holds the edition's key (models.Edition.key: the date, with
# "-weekly" after it for a weekly edition), here and in the tables below. A
# row is written as "pending" just before the provider is called and becomes
# "sent" (with the provider's message id) only after the provider accepted
# that recipient, "failed" for a permanent refusal, or "unknown" when the
# outcome could not be learned. A reader with no row has not been sent this
# issue.
deliveries_table = Table(
    "deliveries",
    metadata,
    Column("issue_date", String(24), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("status", String(10), nullable=False),
    Column("message_id", String(200)),
    Column("reason", String(1000)),
    # Indexed: statistics select the issues sent in a period by this time.
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    # A reader's ledger rows in time order: statistics blame a reader's own
    # unsubscribe on the last edition sent to them, one seek per unsubscribe
    # (by the primary key it was a probe per edition asked about).
    Index("ix_deliveries_subscriber_updated", "subscriber_id", "updated_at"),
)

send_locks_table = Table(
    "send_locks",
    metadata,
    Column("issue_date", String(24), primary_key=True),
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
    Column("issue_date", String(24)),
    Column("bounce_type", String(32)),  # Permanent, Transient, Undetermined
    Column("bounce_subtype", String(64)),
    Column("detail", String(1000)),
    Column("at", DateTime(timezone=True), nullable=False),
    # Each edition's feedback counted by kind from the index alone (delivery
    # figures, the dashboard's deliverability).
    Index("ix_feedback_issue_kind", "issue_date", "kind", "bounce_type", "email_key"),
)

# SNS message ids already handled: a redelivery changes nothing.
sns_seen_table = Table(
    "sns_messages",
    metadata,
    Column("message_id", String(100), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

# Every paper the newsletter has carried, one row per paper (its key: the
# arXiv id without version, or "title:" and its normalized title; see
# models.paper_key), with its richest text; and the days it appeared, with
# its rank (0 first) and upvotes that day. Seed papers, votes and picks refer
# to papers by key. The same paper seen first without an arXiv id and later
# with one is one row, under its arXiv id: its "title:" key is then kept in
# paper_aliases, and everything that named it (appearances, votes, picks,
# weekly editions, profiles) is rewritten to the arXiv id in the same
# transaction (see store.papers).
papers_table = Table(
    "papers",
    metadata,
    Column("key", String(220), primary_key=True),
    Column("arxiv_id", String(32), index=True),
    Column("title", String(500), nullable=False),
    Column("abstract", Text, nullable=False),
    Column("authors", Text, nullable=False),  # JSON list of names
    Column("url", String(2000)),
    Column("code_url", String(2000)),
    Column("project_url", String(2000)),
    Column("ai_summary", Text),
    Column("keywords", Text, nullable=False),  # JSON list
    Column("categories", Text, nullable=False),  # JSON list
    Column("github_stars", Integer),
    Column("comment_count", Integer),
    # Indexed: a search ranks the matches stored last (see store.search).
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    Column("thumbnail_url", String(2000)),  # the source's thumbnail, never shown from there
    # models.title_key of its title: what matches a paper without an arXiv
    # id to this one (its key for a paper without one).
    Column("title_key", String(220), index=True),
)

# The "title:" keys of papers stored first without an arXiv id and later
# found with one (``paper_key``, their row now): old links, tokens and
# references name them still.
paper_aliases_table = Table(
    "paper_aliases",
    metadata,
    Column("alias", String(220), primary_key=True),
    Column("paper_key", String(220), ForeignKey("papers.key"), nullable=False, index=True),
    Column("linked_at", DateTime(timezone=True), nullable=False),
)

# The web app's own copy of a paper's thumbnail (NEWSLETTER_THUMBNAILS):
# the source's picture made at most 600 pixels wide, as PNG, stored when
# the day is, and served at /papers/<key>/thumbnail.png.
paper_thumbnails_table = Table(
    "paper_thumbnails",
    metadata,
    Column("paper_key", String(220), ForeignKey("papers.key"), primary_key=True),
    Column("png", LargeBinary, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
)

appearances_table = Table(
    "appearances",
    metadata,
    Column("date", String(10), primary_key=True),  # YYYY-MM-DD
    Column("rank", Integer, primary_key=True),  # the paper's position in that day's batch, 0 first
    Column("paper_key", String(220), ForeignKey("papers.key"), nullable=False, index=True),
    Column("upvotes", Integer),
)

# Full-text search over the papers (see newsletter.store.search), with each
# database's own machinery, which SQLAlchemy's tables do not describe: with
# SQLite, an FTS5 index over the title, abstract and authors of ``papers``
# (an external-content table: it holds the index, not a copy of the text,
# and is kept up to date by triggers), English stemming and accents
# ignored; with PostgreSQL, a stored generated tsvector column of
# ``papers`` (title, then authors, then abstract in weight) with a GIN
# index. Both are made by migration 0005 and, for a database made from this
# metadata, by the DDL below, run after ``papers`` is created; the migration
# comparison leaves them out (``migrate.include_name``; tests/test_search.py
# checks that both ways build the same). A migration that copies ``papers``
# into a new table (SQLite's batch mode) drops the triggers with the old
# table, and the FTS5 index finds rows by ``papers``' rowid, which a copy
# may change: such a migration must create the triggers again and rebuild
# the index (``INSERT INTO papers_search(papers_search) VALUES ('rebuild')``).
SEARCH_TABLE = "papers_search"  # SQLite: the FTS5 table (and its shadow tables, papers_search_*)
SEARCH_COLUMN = "search"  # PostgreSQL: the tsvector column of papers
SEARCH_INDEX = "ix_papers_search"  # PostgreSQL: its GIN index
SEARCH_DDL = {
    "sqlite": (
        "CREATE VIRTUAL TABLE papers_search USING fts5(title, abstract, authors, content='papers', "
        "content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2')",
        "CREATE TRIGGER papers_search_insert AFTER INSERT ON papers BEGIN "
        "INSERT INTO papers_search(rowid, title, abstract, authors) "
        "VALUES (new.rowid, new.title, new.abstract, new.authors); END",
        "CREATE TRIGGER papers_search_delete AFTER DELETE ON papers BEGIN "
        "INSERT INTO papers_search(papers_search, rowid, title, abstract, authors) "
        "VALUES ('delete', old.rowid, old.title, old.abstract, old.authors); END",
        # Only when the indexed text changed: storing a day again rewrites
        # its papers' rows (stars, comments) with the same text.
        "CREATE TRIGGER papers_search_update AFTER UPDATE OF title, abstract, authors ON papers "
        "WHEN old.title IS NOT new.title OR old.abstract IS NOT new.abstract OR old.authors IS NOT new.authors "
        "BEGIN "
        "INSERT INTO papers_search(papers_search, rowid, title, abstract, authors) "
        "VALUES ('delete', old.rowid, old.title, old.abstract, old.authors); "
        "INSERT INTO papers_search(rowid, title, abstract, authors) "
        "VALUES (new.rowid, new.title, new.abstract, new.authors); END",
    ),
    "postgresql": (
        "ALTER TABLE papers ADD COLUMN search tsvector GENERATED ALWAYS AS ("
        "setweight(to_tsvector('english'::regconfig, title), 'A') || "
        "setweight(to_tsvector('english'::regconfig, authors), 'B') || "
        "setweight(to_tsvector('english'::regconfig, abstract), 'C')) STORED",
        "CREATE INDEX ix_papers_search ON papers USING gin (search)",
    ),
}
for _dialect, _statements in SEARCH_DDL.items():
    for _statement in _statements:
        event.listen(papers_table, "after_create", DDL(_statement).execute_if(dialect=_dialect))

# What each reader told us they read (see models.Profile): their lists in
# one JSON object (interests, authors, categories, seeds, and the keys of the
# papers they liked and disliked, newest first, repeating the votes below),
# so ranking a reader reads and decodes one row.
profiles_table = Table(
    "profiles",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("lists", Text, nullable=False),
    Column("picks", Integer, nullable=False),  # how many picks (0: none)
    # The rest of the day in their email (models.RestOfDay): every title, or one line.
    Column("rest", String(8), nullable=False, default="titles", server_default="titles"),
    # Where their muted phrases hide papers (models.Muting): their picks, or the top cards too.
    Column("muting", String(8), nullable=False, default="picks", server_default="picks"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

votes_table = Table(
    "votes",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("paper_key", String(220), primary_key=True, index=True),
    Column("vote", Integer, nullable=False),  # +1 or -1
    Column("edition", String(24), nullable=False),  # the edition the vote came from
    Column("at", DateTime(timezone=True), nullable=False),
)

# Each reader's model of their votes (see newsletter.picks.reader_model): a
# linear model over the papers' embeddings, its weights as float32 bytes
# (about 1 KB) with the version of the features they weigh, and whether it
# is due: their votes or seed papers changed since it was fitted (set in the
# transaction that changes them; a worker fits it, never the vote's request).
reader_models_table = Table(
    "reader_models",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("due", Boolean, nullable=False, index=True),
    Column("features", String(32)),  # None until fitted, or when too few votes to fit
    Column("weights", LargeBinary),
    # What shapes the reader's picks, as their preferences page shows it:
    # JSON {"words": [...], "liked": [keys], "disliked": [keys]}, made with the fit.
    Column("shaping", Text),
    Column("changed_at", DateTime(timezone=True), nullable=False),  # when the votes last changed
    Column("fitted_at", DateTime(timezone=True)),
)

# Votes a reader asked us to forget ("Forget my votes"), kept for
# FORGOTTEN_DAYS so that they can undo it; only the last forgetting is kept.
forgotten_votes_table = Table(
    "forgotten_votes",
    metadata,
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("paper_key", String(220), primary_key=True),
    Column("vote", Integer, nullable=False),
    Column("edition", String(24), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("forgotten_at", DateTime(timezone=True), nullable=False, index=True),
)

# The papers picked for each reader in each edition, in pick order: written
# with the reader's ledger row, kept when that row is forgotten (so a rerun
# sends the same picks), and read for the rule that a paper is not picked
# for a reader again within 30 days.
picks_table = Table(
    "picks",
    metadata,
    Column("edition", String(24), primary_key=True),  # YYYY-MM-DD for a daily edition
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("position", Integer, primary_key=True),  # 0 first
    Column("paper_key", String(220), nullable=False),
    Column("paper_rank", Integer, nullable=False),  # the paper's position in the edition
    Column("score", Float, nullable=False),
    Column("why_kind", String(16), nullable=False),
    Column("why_subject", String(500), nullable=False),
    # No other index: the 30-day rule reads by edition and reader (see
    # picked_papers), and each index is one more write per pick.
)

# Which papers each edition picked for anyone (a few dozen rows per
# edition), written with the picks: what a send asks first for the 30-day
# rule, since on most days none of the day's papers was picked in the month
# before, and then no reader's picks need reading (see picks.recently_picked).
picked_papers_table = Table(
    "picked_papers",
    metadata,
    Column("paper_key", String(220), primary_key=True),  # first: "was this paper picked in these editions?"
    Column("edition", String(24), primary_key=True),
)

# The dashboard's count of status changes per day (UTC) and kind, for the
# days that are over: events are only ever added, stamped when they happen,
# so a past day's count never changes. newsletter_meta's event_days_from
# and event_days_through say which days are counted (every day between).
event_days_table = Table(
    "event_days",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD
    Column("old_status", String(16), primary_key=True),  # "" for a new reader
    Column("new_status", String(16), primary_key=True),
    Column("changes", Integer, nullable=False),
)

# The operators who may use the dashboard (/admin/), with their passwords'
# Argon2id hashes (see newsletter.operators.passwords); the dashboard is off while
# there is none.
admins_table = Table(
    "admins",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(24), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
    Column("last_login_at", DateTime(timezone=True)),
)

# Signed-in operators: one row per session, named by the SHA-256 of the
# random token its cookie carries (a copy of the database holds no usable
# session). Logging out, a new password and inactivity delete it.
admin_sessions_table = Table(
    "admin_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("admin_id", Integer, ForeignKey("admins.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("client", String(64), nullable=False),
)

# Login attempts, kept a day, for the limits per name and per client
# address: "pending" while the password is being checked (so parallel
# attempts count), then "failed" or "ok".
admin_logins_table = Table(
    "admin_logins",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("name_key", String(64), nullable=False),
    Column("client", String(64), nullable=False),
    Column("outcome", String(8), nullable=False),
    Index("ix_admin_logins_name_key_at", "name_key", "at"),
    Index("ix_admin_logins_client_at", "client", "at"),
)

# The ledger's totals of editions whose send is over, so the dashboard does
# not count a million rows per edition each time: written when read for an
# edition with no send lock and a finished_at, and deleted by the send lock
# (newsletter.store.ledger) whenever a run of the edition starts.
edition_totals_table = Table(
    "edition_totals",
    metadata,
    Column("edition", String(24), primary_key=True),
    Column("first_at", DateTime(timezone=True), nullable=False),  # the earliest ledger write
    Column("last_at", DateTime(timezone=True), nullable=False),  # the latest
    Column("pending", Integer, nullable=False),
    Column("sent", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("unknown", Integer, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

# Reader actions from the web (sign-ups, confirmations, unsubscribes,
# resubscribes, saved preferences, votes, and seed papers to fetch from
# arXiv), recorded before anything else is done with them: an action
# is never lost, even while a long operation (an import, a migration) holds
# the database. They are applied at once when the database allows, else as
# soon as it is free (see newsletter.readers.actions). With SQLite this table lives in
# a file of its own beside the database, so recording one never waits for
# the database's single writer; with PostgreSQL it is a table like the others.
inbox_metadata = MetaData()

actions_table = Table(
    "reader_actions",
    inbox_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # signup, confirm, unsubscribe, resubscribe, preferences, vote, fetch_paper
    Column("kind", String(16), nullable=False),
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
