"""A stand-in for the arXiv API (``/api/query?id_list=…``) on 127.0.0.1:
it answers with an Atom feed of the papers it knows among those asked for,
as arXiv does, and can be told to fail the next requests (HTTP 503) or to
answer with something that is not a feed. It records every request."""

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
    an HTML page; ``errors`` are ids answered with arXiv's error entry."""

    papers: dict[str, tuple[str, str, list[str], str]] = field(default_factory=dict)
    failures: int = 0
    garbage: bool = False
    errors: set[str] = field(default_factory=set)
    requests: list[list[str]] = field(default_factory=list)

    def __enter__(self) -> "ArxivStandIn":
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server name)
                ids = parse_qs(urlsplit(self.path).query).get("id_list", [""])[0].split(",")
                standin.requests.append(ids)
                if standin.failures:
                    standin.failures -= 1
                    self.answer(503, "text/plain", "Service Unavailable")
                elif standin.garbage:
                    self.answer(200, "text/html", "<html><body>Rate exceeded.</body></html>")
                else:
                    self.answer(200, "application/atom+xml", standin.feed(ids))

            def answer(self, status: int, kind: str, body: str) -> None:
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
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
