"""Downloading one day from the daily papers API (``/api/daily_papers``),
and single papers from the arXiv API (readers' seed papers).

Every download has a total deadline (urllib's own timeout bounds each read
only: a server sending a byte every few seconds would hold it for as long
as it likes), and follows no redirect to another host.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from newsletter import __version__
from newsletter.papers.batches import MAX_FILE_BYTES, parse_batch, write_canonical
from newsletter.core.errors import FetchError, OutputError
from newsletter.core.models import Batch, Paper

# Papers asked of the arXiv API in one request.
ARXIV_MAX_IDS = 20


def daily_papers_url(api_base_url: str, date: dt.date) -> str:
    """Return the API address for ``date``."""
    return f"{api_base_url.rstrip('/')}/api/daily_papers?{urlencode({'date': date.isoformat()})}"


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Makes a redirect an error: every redirect, or with ``same_origin``
    one to another scheme, host or port. A URL checked or configured is the
    one asked; a redirect would let any other host answer in its place (or
    receive what is sent)."""

    def __init__(self, same_origin: bool = False):
        self.same_origin = same_origin

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if self.same_origin and _origin(newurl) == _origin(req.full_url):
            return super().redirect_request(req, fp, code, msg, headers, newurl)
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl!r} not followed", headers, fp)


def _origin(url: str) -> tuple:
    """The scheme, host and port of ``url`` (the scheme's port when it
    names none; None for a malformed URL)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return (None,)


class _Deadline:
    """The time one download may take in all: when it is up, the sockets of
    the download's connections are shut down, which ends a read in progress
    however slowly the server sends."""

    def __init__(self, seconds: float):
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._over = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left (a little more than none once it is up)."""
        return max(self.ends - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down too when the time is up."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired and not self._over:
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass

    def finish(self) -> bool:
        """Stop the clock; return whether the time was up before."""
        with self._lock:
            self._over = True
            self._timer.cancel()
            return self.expired


def _within(deadline: _Deadline, handler_class: type) -> urllib.request.BaseHandler:
    """An instance of urllib's ``handler_class`` (HTTP or HTTPS) whose
    connections are made within ``deadline``: connecting (and the TLS
    handshake) may take the time left, and each connection's socket is
    watched (urllib lets go of it once the headers are read, the body
    still coming through it)."""

    class Handler(handler_class):
        def do_open(self, http_class, req, **kwargs):
            class Watched(http_class):
                def connect(self):
                    self.timeout = deadline.left()
                    super().connect()
                    deadline.watch(self.sock)

            return super().do_open(Watched, req, **kwargs)

    return Handler()


def download(url: str, timeout: float, accept: str = "application/json", max_bytes: int | None = None) -> bytes:
    """GET ``url`` (asking for ``accept``) and return the body, all of it
    within ``timeout`` seconds. A redirect is followed only to the same
    scheme, host and port.

    Raises :class:`FetchError` for a network error, an HTTP error status
    (a redirect to another host included), an answer not complete within
    ``timeout``, an answer that is not valid HTTP or is cut off, or an
    answer larger than ``max_bytes`` (by default the batch size limit).
    """
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    request = urllib.request.Request(
        url, headers={"Accept": accept, "User-Agent": f"newsletter/{__version__}"}
    )
    deadline = _Deadline(timeout)
    opener = urllib.request.build_opener(RefuseRedirects(same_origin=True),
                                         _within(deadline, urllib.request.HTTPHandler),
                                         _within(deadline, urllib.request.HTTPSHandler))
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection open
        raise FetchError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if deadline.finish() or isinstance(reason, (socket.timeout, TimeoutError)):
            raise FetchError(f"{url}: no answer within {timeout:g} s") from exc
        raise FetchError(f"{url}: cannot connect ({reason})") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        # A connection cut at the deadline ends in any of these.
        if deadline.finish() or isinstance(exc, (socket.timeout, TimeoutError)):
            raise FetchError(f"{url}: no answer within {timeout:g} s") from exc
        if isinstance(exc, (OSError, ValueError)):  # reset connections, bad URLs
            raise FetchError(f"{url}: download failed ({exc})") from exc
        raise FetchError(f"{url}: download failed ({type(exc).__name__})") from exc  # cut off, or not HTTP
    finally:
        expired = deadline.finish()
    if expired:  # the body read stopped where the connection was cut
        raise FetchError(f"{url}: no answer within {timeout:g} s")
    if len(body) > max_bytes:
        raise FetchError(f"{url}: the answer is larger than {max_bytes:,} bytes")
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
