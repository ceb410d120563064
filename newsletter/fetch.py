"""Downloading one day from the daily papers API (``/api/daily_papers``),
and single papers from the arXiv API (readers' seed papers)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

from newsletter import __version__
from newsletter.batches import MAX_FILE_BYTES, parse_batch, write_canonical
from newsletter.errors import FetchError, OutputError
from newsletter.models import Batch, Paper

# Papers asked of the arXiv API in one request.
ARXIV_MAX_IDS = 20


def daily_papers_url(api_base_url: str, date: dt.date) -> str:
    """Return the API address for ``date``."""
    return f"{api_base_url.rstrip('/')}/api/daily_papers?{urlencode({'date': date.isoformat()})}"


def download(url: str, timeout: float, accept: str = "application/json") -> bytes:
    """GET ``url`` (asking for ``accept``) and return the body.

    Raises :class:`FetchError` for a network error, an HTTP error status, a
    timeout, an answer that is not valid HTTP or is cut off, or an answer
    larger than the batch size limit.
    """
    request = urllib.request.Request(
        url, headers={"Accept": accept, "User-Agent": f"newsletter/{__version__}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_FILE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection open
        raise FetchError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise FetchError(f"{url}: no answer within {timeout:g} s") from exc
        raise FetchError(f"{url}: cannot connect ({reason})") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise FetchError(f"{url}: no answer within {timeout:g} s") from exc
    except (OSError, ValueError) as exc:  # reset connections, bad URLs
        raise FetchError(f"{url}: download failed ({exc})") from exc
    except http.client.HTTPException as exc:  # cut-off bodies, answers that are not HTTP
        raise FetchError(f"{url}: download failed ({type(exc).__name__})") from exc
    if len(body) > MAX_FILE_BYTES:
        raise FetchError(f"{url}: the answer is larger than {MAX_FILE_BYTES:,} bytes")
    return body


def fetch_day(api_base_url: str, date: dt.date, out_dir: Path, timeout: float) -> tuple[Batch, Path]:
    """Download ``date`` from the API, validate it and save it as canonical
    JSON in ``out_dir/<date>.json``.

    Returns the batch and the path written. Nothing is written unless the
    whole answer was downloaded and is a valid batch. Raises
    :class:`FetchError` (download) or :class:`BatchError` (content).
    """
    url = daily_papers_url(api_base_url, date)
    body = download(url, timeout)
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FetchError(f"{url}: the answer is not JSON") from exc
    except RecursionError as exc:
        raise FetchError(f"{url}: the answer is JSON nested too deeply") from exc
    batch = parse_batch(body, source=url, date=date)
    try:
        path = write_canonical(batch, Path(out_dir) / f"{date.isoformat()}.json")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write ({exc.strerror or exc})") from exc
    return batch, path


def arxiv_query_url(api_url: str, arxiv_ids: list[str]) -> str:
    """Return the arXiv API address that answers with the papers ``arxiv_ids``."""
    return f"{api_url}?{urlencode({'id_list': ','.join(arxiv_ids), 'max_results': len(arxiv_ids)})}"


def fetch_arxiv_papers(api_url: str, arxiv_ids: list[str], timeout: float) -> dict[str, Paper]:
    """Ask the arXiv API at ``api_url`` for the papers ``arxiv_ids`` (bare
    ids, at most :data:`ARXIV_MAX_IDS`) and return ``{arxiv id: Paper}`` for
    those it knows; an id it does not know is left out.

    The answer is an Atom feed, read and checked as a batch is. Raises
    :class:`FetchError` (download) or :class:`BatchError` (content).
    """
    if len(arxiv_ids) > ARXIV_MAX_IDS:
        raise ValueError(f"at most {ARXIV_MAX_IDS} papers at a time")
    url = arxiv_query_url(api_url, arxiv_ids)
    batch = parse_batch(download(url, timeout, accept="application/atom+xml"), source=url)
    # An id the API does not know comes back as an entry titled "Error",
    # with no arXiv id: only the papers asked for are kept.
    wanted = set(arxiv_ids)
    return {paper.arxiv_id: paper for paper in batch.papers if paper.arxiv_id in wanted}
