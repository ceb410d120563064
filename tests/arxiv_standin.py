"""A stand-in for the arXiv API (``/api/query?id_list=…``) on 127.0.0.1:
it answers with an Atom feed of the papers it knows among those asked for,
as arXiv does, and can be told to fail the next requests (HTTP 503), to
answer with something that is not a feed, to send its answers one byte at
a time (a slow drip), or to redirect every request elsewhere. It records
every request."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

FEED_START = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <title type="html">ArXiv Query: id_list={ids}</title>
  <id>http://arxiv.org/api/standin</id>
  <updated>2025-03-11T00:00:00-05:00</updated>
"""
ENTRY = """  <entry>
    <id>http://arxiv.org/abs/{id}v2</id>
    <updated>2024-03-05T10:00:00Z</updated>
    <published>2024-03-02T10:00:00Z</published>
    <title>{title}</title>
    <summary>{abstract}</summary>
    {authors}
    <link href="http://arxiv.org/abs/{id}v2" rel="alternate" type="text/html"/>
    <arxiv:primary_category term="{category}" scheme="http://arxiv.org/schemas/atom"/>
    <category term="{category}" scheme="http://arxiv.org/schemas/atom"/>
  </entry>
"""
# What arXiv answers for an id it cannot read.
ERROR_ENTRY = """  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_{id}</id>
    <title>Error</title>
    <summary>incorrect id format for {id}</summary>
    <updated>2025-03-11T00:00:00-05:00</updated>
    <link href="http://arxiv.org/api/errors#incorrect_id_format_for_{id}" rel="alternate" type="text/html"/>
    <author><name>arXiv api core</name></author>
  </entry>
"""


@dataclass
class ArxivStandIn:
    """Serves ``papers`` ({arxiv id: (title, abstract, authors, category)});
    ``failures`` next requests get HTTP 503; ``garbage`` makes every answer
    an HTML page; ``errors`` are ids answered with arXiv's error entry.

    With ``drip`` (seconds), an answer is sent one byte at a time, that
    long apart (from its status line on, or with ``drip_body_only`` from
    its body on): ``dripping`` is set when the first answer starts, and
    ``hung_up`` once a client closed the connection before its end.
    With ``redirect_to`` (a URL), every request for another address is
    answered 302 to it, with the same query."""

    papers: dict[str, tuple[str, str, list[str], str]] = field(default_factory=dict)
    failures: int = 0
    garbage: bool = False
    errors: set[str] = field(default_factory=set)
    drip: float = 0.0
    drip_body_only: bool = False
    redirect_to: str | None = None
    requests: list[list[str]] = field(default_factory=list)
    dripping: threading.Event = field(default_factory=threading.Event)
    hung_up: threading.Event = field(default_factory=threading.Event)
    closing: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "ArxivStandIn":
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server name)
                query = urlsplit(self.path).query
                ids = parse_qs(query).get("id_list", [""])[0].split(",")
                standin.requests.append(ids)
                target = urlsplit(standin.redirect_to or "")
                if standin.redirect_to and (target.port, target.path) != (self.server.server_address[1],
                                                                          urlsplit(self.path).path):
                    self.send_response(302)
                    self.send_header("Location", f"{standin.redirect_to}?{query}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif standin.failures:
                    standin.failures -= 1
                    self.answer(503, "text/plain", "Service Unavailable")
                elif standin.garbage:
                    self.answer(200, "text/html", "<html><body>Rate exceeded.</body></html>")
                else:
                    self.answer(200, "application/atom+xml", standin.feed(ids))

            def answer(self, status: int, kind: str, body: str) -> None:
                data = body.encode("utf-8")
                if standin.drip:
                    head = (f"HTTP/1.1 {status} OK\r\nContent-Type: {kind}\r\n"
                            f"Content-Length: {len(data)}\r\n\r\n").encode()
                    self.close_connection = True
                    self.trickle(head + data, len(head) if standin.drip_body_only else 0)
                    return
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def trickle(self, data: bytes, at_once: int) -> None:
                """Send ``data``: its first ``at_once`` bytes, then a byte
                every ``drip`` seconds until the client hangs up or the
                stand-in closes."""
                standin.dripping.set()
                try:
                    self.wfile.write(data[:at_once])
                    for offset in range(at_once, len(data)):
                        if standin.closing.wait(standin.drip):
                            return
                        self.wfile.write(data[offset:offset + 1])
                        self.wfile.flush()
                except OSError:  # the client gave up
                    standin.hung_up.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        """The API's address, as NEWSLETTER_ARXIV_API_URL gives it."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/query"

    def feed(self, ids: list[str]) -> str:
        parts = [FEED_START.format(ids=escape(",".join(ids)))]
        for arxiv_id in ids:
            if arxiv_id in self.errors:
                parts.append(ERROR_ENTRY.format(id=escape(arxiv_id)))
            elif arxiv_id in self.papers:
                title, abstract, authors, category = self.papers[arxiv_id]
                parts.append(ENTRY.format(
                    id=escape(arxiv_id), title=escape(title), abstract=escape(abstract), category=escape(category),
                    authors="".join(f"<author><name>{escape(name)}</name></author>" for name in authors)))
        parts.append("</feed>\n")
        return "".join(parts)
