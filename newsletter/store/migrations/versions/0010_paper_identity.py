"""One paper, whatever the source: a paper stored without an arXiv id and the
same paper stored with one are one paper

- ``papers.title_key``: ``title:`` and the paper's title normalized (see
  ``models.title_key``), what matches a paper without an arXiv id to the
  same paper with one; filled for every stored paper.
- ``paper_aliases``: the ``title:`` keys of papers later found with an
  arXiv id, and that id.
- The papers stored both ways already (a ``title:`` paper whose key is the
  title key of exactly one paper with an arXiv id) are merged into the
  arXiv one: appearances, picks, votes (a reader who voted on both keeps
  the newer vote), liked and disliked lists, weekly editions and the
  thumbnail name the arXiv id, the ``title:`` row goes and its key becomes
  an alias. (The running code merges the same way when it stores a paper,
  and also gives the arXiv row the text only the other row had.)
- ``newsletter_meta.schema_version`` becomes 10.

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-20
"""

import datetime as dt
import json
import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))
papers = sa.table("papers", sa.column("key", sa.String), sa.column("arxiv_id", sa.String),
                  sa.column("title", sa.String), sa.column("title_key", sa.String))
appearances = sa.table("appearances", sa.column("paper_key", sa.String))
picks = sa.table("picks", sa.column("paper_key", sa.String))
thumbnails = sa.table("paper_thumbnails", sa.column("paper_key", sa.String))
votes = sa.table("votes", sa.column("subscriber_id", sa.Integer), sa.column("paper_key", sa.String),
                 sa.column("vote", sa.Integer), sa.column("at", sa.DateTime(timezone=True)))
profiles = sa.table("profiles", sa.column("subscriber_id", sa.Integer), sa.column("lists", sa.Text))
issues = sa.table("issues", sa.column("date", sa.String), sa.column("kind", sa.String),
                  sa.column("paper_keys", sa.Text))
aliases = sa.table("paper_aliases", sa.column("alias", sa.String), sa.column("paper_key", sa.String),
                   sa.column("linked_at", sa.DateTime(timezone=True)))


def title_key(title: str) -> str:
    """models.title_key as of this release."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", title) if not unicodedata.combining(c))
    return "title:" + "-".join(re.findall(r"\w+", plain.casefold()))[:200]


def upgrade() -> None:
    # A plain ADD COLUMN, not a batch copy of the table: SQLite's search
    # index finds papers by rowid, which a copy would change.
    op.add_column("papers", sa.Column("title_key", sa.String(length=220), nullable=True))
    op.create_index("ix_papers_title_key", "papers", ["title_key"])
    op.create_table(
        "paper_aliases",
        sa.Column("alias", sa.String(length=220), nullable=False),
        sa.Column("paper_key", sa.String(length=220), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["paper_key"], ["papers.key"]),
        sa.PrimaryKeyConstraint("alias"),
    )
    op.create_index("ix_paper_aliases_paper_key", "paper_aliases", ["paper_key"])
    conn = op.get_bind()
    rows = conn.execute(sa.select(papers.c.key, papers.c.arxiv_id, papers.c.title)).all()
    filled = [{"k": r.key, "t": title_key(r.title)} for r in rows]
    if filled:
        conn.execute(papers.update().where(papers.c.key == sa.bindparam("k")).values(title_key=sa.bindparam("t")),
                     filled)
    by_title: dict[str, list[str]] = {}
    for r, f in zip(rows, filled):
        if r.arxiv_id:
            by_title.setdefault(f["t"], []).append(r.key)
    stamp = dt.datetime.now(dt.timezone.utc)
    for r in rows:
        found = by_title.get(r.key) if not r.arxiv_id and r.key.startswith("title:") else None
        if found and len(found) == 1:
            merge(conn, r.key, found[0], stamp)
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="10"))


def merge(conn, alias: str, key: str, stamp) -> None:
    """Everything naming the paper ``alias`` names ``key``; ``alias``'s row goes."""
    conn.execute(appearances.update().where(appearances.c.paper_key == alias).values(paper_key=key))
    conn.execute(picks.update().where(picks.c.paper_key == alias).values(paper_key=key))
    if conn.scalar(sa.select(thumbnails.c.paper_key).where(thumbnails.c.paper_key == key)) is None:
        conn.execute(thumbnails.update().where(thumbnails.c.paper_key == alias).values(paper_key=key))
    else:
        conn.execute(thumbnails.delete().where(thumbnails.c.paper_key == alias))
    voted = {r.subscriber_id: r for r in conn.execute(sa.select(votes).where(votes.c.paper_key == alias)).all()}
    final = {}
    for r in conn.execute(sa.select(votes).where(votes.c.paper_key == key)).all():
        older = voted.get(r.subscriber_id)
        if older is None:
            continue
        if older.at > r.at:
            conn.execute(votes.delete().where(votes.c.subscriber_id == r.subscriber_id, votes.c.paper_key == key))
        else:
            conn.execute(votes.delete().where(votes.c.subscriber_id == r.subscriber_id, votes.c.paper_key == alias))
            final[r.subscriber_id] = r.vote
    conn.execute(votes.update().where(votes.c.paper_key == alias).values(paper_key=key))
    for subscriber_id, r in voted.items():
        stored = conn.scalar(sa.select(profiles.c.lists).where(profiles.c.subscriber_id == subscriber_id))
        if stored is None:
            continue
        lists, vote = json.loads(stored), final.get(subscriber_id, r.vote)
        for name, sign in (("liked", 1), ("disliked", -1)):
            renamed = list(dict.fromkeys(key if k == alias else k for k in lists.get(name, ())))
            if sign != vote and key in renamed:
                renamed.remove(key)
            if renamed:
                lists[name] = renamed
            else:
                lists.pop(name, None)
        conn.execute(profiles.update().where(profiles.c.subscriber_id == subscriber_id).values(
            lists=json.dumps(lists, ensure_ascii=False, separators=(",", ":"))))
    for r in conn.execute(sa.select(issues).where(issues.c.paper_keys.like(f'%"{alias}"%'))).all():
        renamed = [key if k == alias else k for k in json.loads(r.paper_keys)]
        conn.execute(issues.update().where(issues.c.date == r.date, issues.c.kind == r.kind).values(
            paper_keys=json.dumps(renamed)))
    conn.execute(aliases.insert().values(alias=alias, paper_key=key, linked_at=stamp))
    conn.execute(papers.delete().where(papers.c.key == alias))


def downgrade() -> None:
    # Papers merged stay merged (their old keys are lost with the aliases).
    op.drop_index("ix_paper_aliases_paper_key", table_name="paper_aliases")
    op.drop_table("paper_aliases")
    op.drop_index("ix_papers_title_key", table_name="papers")
    # SQLite drops a column in place (3.35 and later); its search index's
    # rowids stay those of the papers.
    op.drop_column("papers", "title_key")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="9"))
