"""``newsletter picks``: each reader's personal picks for a batch, with
their scores and reasons, as the email would put them first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import click

from newsletter.papers.batches import load_batch
from newsletter.cli import common
from newsletter.core.errors import BatchError, Refused
from newsletter.core.models import PicksState, Subscriber, SubscriberStatus
from newsletter.picks.picking import EditionPicks, ReaderPicks
from newsletter.sending.dispatch import RANK_PAGE
from newsletter.sending.ratelimit import chunked
from newsletter.core.text import terminal_safe

# What a reader's state says when they have no picks.
NO_PICKS = {PicksState.NONE: "nothing matched their interests",
            PicksState.HELD: "what matched was picked for them recently", PicksState.INVITE: "no interests yet",
            PicksState.OFF: "picks turned off"}


@click.command("picks")
@click.argument("batch_file", metavar="BATCH", type=click.Path(path_type=Path))
@click.option("--date", type=common.DATE, help="The issue date (default: the batch's).")
@click.option("--reader", "email", metavar="EMAIL", help="The picks of this reader.")
@click.option("--all", "everyone", is_flag=True, help="The picks of every active reader.")
@click.option("--json", "as_json", is_flag=True,
              help='A JSON list of {"email", "state", "picks": [{"title", "arxiv_id", "score", "why"}]}.')
@click.pass_context
def picks(ctx: click.Context, batch_file: Path, date, email: str | None, everyone: bool, as_json: bool) -> None:
    """Store BATCH's papers and show each reader's personal picks among them,
    best first, with the score and the reason of each.

    Give exactly one of --reader EMAIL and --all. A paper the reader rated,
    or that was picked for them in the last 30 days, is never picked; the
    picks an issue already stored for a reader are shown as they were.
    """
    if (email is None) != everyone:
        raise click.UsageError("give exactly one of --reader EMAIL and --all")
    batch = load_batch(batch_file, date=common.day_of(date))
    common.warn(batch)
    if not batch.papers:
        raise BatchError(str(batch_file), "has no papers: there is nothing to pick")
    store = common.store_of(ctx)
    store.store_batch(batch)
    edition = EditionPicks(store, batch.date.isoformat(), batch.date, batch.papers)
    if email is not None:
        reader = store.get(email=email)
        if reader is None:
            raise Refused(f"{email.strip()} is not on the list")
        readers: Iterable[Subscriber] = [reader]
    else:
        readers = store.iter_subscribers(status=SubscriberStatus.ACTIVE, page=RANK_PAGE)
    first = True
    if as_json:
        click.echo("[", nl=False)
    for chunk in chunked(readers, RANK_PAGE):
        found = edition.for_readers(reader.id for reader in chunk)
        for reader in chunk:
            if as_json:
                click.echo(("\n" if first else ",\n") + json.dumps(_as_json(batch.papers, reader, found[reader.id])),
                           nl=False)
            else:
                _show(batch.papers, reader, found[reader.id])
            first = False
    if as_json:
        click.echo("\n]" if not first else "]")


def _as_json(papers, reader: Subscriber, chosen: ReaderPicks) -> dict:
    """One reader's entry of the JSON list (ASCII: safe on any terminal)."""
    return {"email": reader.email, "state": chosen.state, "picks": [
        {"title": papers[pick.position].title, "arxiv_id": papers[pick.position].arxiv_id,
         "score": round(pick.score, 4), "why": pick.reason.text()}
        for pick in chosen.picks]}


def _show(papers, reader: Subscriber, chosen: ReaderPicks) -> None:
    """One reader's picks as lines of text, every stored value terminal-safe."""
    if not chosen.picks:
        click.echo(f"{terminal_safe(reader.email)}: no picks ({NO_PICKS.get(chosen.state, chosen.state)})")
        return
    click.echo(f"{terminal_safe(reader.email)}: {len(chosen.picks)} pick{'s' if len(chosen.picks) > 1 else ''}")
    for number, pick in enumerate(chosen.picks, start=1):
        paper = papers[pick.position]
        where = f" ({paper.arxiv_id})" if paper.arxiv_id else ""
        click.echo(f"  {number:>2}. {terminal_safe(paper.title)}{terminal_safe(where)}")
        click.echo(f"      {pick.score:.3f}  {terminal_safe(pick.reason.text())}")
