"""Downloading a day from the daily papers API and papers from the arXiv API
(newsletter/papers/fetch.py), against real HTTP servers on 127.0.0.1 that serve
recorded answers (and the arXiv stand-in: slow drips, redirects)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from arxiv_standin import ArxivStandIn
from conftest import FIXTURES, SECRET, free_port
from newsletter.papers import fetch as fetch_module
from newsletter.papers.batches import load_batch
from newsletter.core.errors import BatchError, FetchError, NewsletterError, OutputError
from newsletter.papers.fetch import daily_papers_url, fetch_arxiv_papers, fetch_day
from newsletter.store import open_store

API_JSON = FIXTURES / "api" / "daily_papers.json"
DAY = date(2025, 3, 11)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0  # seconds to stall before answering (released at teardown)
    raw: bytes | None = None  # sent as is instead of a proper HTTP answer, then the connection closes


@dataclass
class Server:
    base_url: str
    answer: Answer = field(default_factory=Answer)
    requests: list[dict] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def api_server():
    """A ThreadingHTTPServer on 127.0.0.1 (port 0) answering with ``server.answer``."""
    state = Server(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            state.requests.append({"path": self.path, "headers": dict(self.headers)})
            answer = state.answer
            if answer.delay:
                state.release.wait(answer.delay)
            if answer.raw is not None:
                self.close_connection = True
                self.wfile.write(answer.raw)
                return
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    state.answer = Answer(body=API_JSON.read_bytes())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """urllib honours *_proxy variables; requests to the local server must not."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def out_dir(isolated):
    path = isolated / "batches"
    path.mkdir()
    return path


def assert_nothing_written(out_dir):
    assert sorted(p.name for p in out_dir.iterdir()) == []


def test_daily_papers_url():
    assert daily_papers_url("https://huggingface.co/", DAY) == "https://huggingface.co/api/daily_papers?date=2025-03-11"


def test_fetch_writes_the_canonical_batch(api_server, out_dir):
    batch, path = fetch_day(api_server.base_url, DAY, out_dir, timeout=5)

    assert [r["path"] for r in api_server.requests] == ["/api/daily_papers?date=2025-03-11"]
    headers = {k.lower(): v for k, v in api_server.requests[0]["headers"].items()}
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("newsletter/")

    assert path == out_dir / "2025-03-11.json"
    assert sorted(p.name for p in out_dir.iterdir()) == ["2025-03-11.json"]
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["date"] == "2025-03-11"
    assert len(doc["papers"]) == 4  # five entries, one a second version of another

    assert batch.date == DAY
    assert [p.arxiv_id for p in batch.papers] == ["2503.07703", "2503.07605", "2503.07920", "2503.08120"]
    assert batch.papers == load_batch(API_JSON).papers
    reloaded = load_batch(path)
    assert reloaded.date == DAY
    assert reloaded.papers == batch.papers


def test_fetch_date_is_the_requested_day(api_server, out_dir):
    # the recorded entries are from Mar 11; asking for Mar 12 names the file and batch after Mar 12
    batch, path = fetch_day(api_server.base_url, date(2025, 3, 12), out_dir, timeout=5)
    assert api_server.requests[0]["path"] == "/api/daily_papers?date=2025-03-12"
    assert batch.date == date(2025, 3, 12)
    assert path.name == "2025-03-12.json"
    assert load_batch(path).date == date(2025, 3, 12)


def test_fetch_creates_the_folder(api_server, isolated):
    _, path = fetch_day(api_server.base_url, DAY, isolated / "a" / "b", timeout=5)
    assert path == isolated / "a" / "b" / "2025-03-11.json" and path.is_file()


def test_fetch_day_without_papers(api_server, out_dir):
    api_server.answer = Answer(body=b"[]")
    batch, path = fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert batch.papers == ()
    assert load_batch(path).papers == ()


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_error_status(api_server, out_dir, status, reason):
    api_server.answer = Answer(status=status, body=b'{"error": "nope"}')
    with pytest.raises(FetchError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert f"HTTP {status} {reason}" in str(info.value)
    assert str(info.value).startswith(f"{api_server.base_url}/api/daily_papers?date=2025-03-11")
    assert info.value.exit_code == 1
    assert_nothing_written(out_dir)


def test_failed_fetch_keeps_an_earlier_good_file(api_server, out_dir):
    _, path = fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    before = path.read_bytes()
    api_server.answer = Answer(status=500)
    with pytest.raises(FetchError):
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert path.read_bytes() == before
    assert sorted(p.name for p in out_dir.iterdir()) == ["2025-03-11.json"]


def test_timeout(api_server, out_dir):
    api_server.answer = Answer(body=API_JSON.read_bytes(), delay=10)
    with pytest.raises(FetchError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=0.5)
    assert "no answer within 0.5 s" in str(info.value)
    assert len(api_server.requests) == 1  # it did reach the server
    assert_nothing_written(out_dir)


PAPER = ("Concept Sliders", "We present concept sliders.", ["Rohit Gandikota"], "cs.CV")


@pytest.mark.parametrize("body_only", [False, True], ids=["whole-answer", "body"])
def test_a_server_sending_a_byte_at_a_time_is_cut_off_at_the_total_deadline(body_only):
    # A byte every 50 ms: no single read waits anywhere near the timeout,
    # and the whole answer would take over 30 s.
    with ArxivStandIn(papers={"2311.12092": PAPER}, drip=0.05, drip_body_only=body_only) as arxiv:
        with pytest.raises(FetchError) as info:
            fetch_arxiv_papers(arxiv.url, ["2311.12092"], timeout=0.5)
        assert "no answer within 0.5 s" in str(info.value)
        assert arxiv.hung_up.wait(20), "the connection was not closed"


def test_a_redirect_to_another_host_is_not_followed_one_on_the_same_host_is():
    with ArxivStandIn(papers={"2311.12092": PAPER}) as elsewhere, \
            ArxivStandIn(papers={"2311.12092": PAPER}, redirect_to=elsewhere.url) as arxiv:
        with pytest.raises(FetchError) as info:
            fetch_arxiv_papers(arxiv.url, ["2311.12092"], timeout=5)
        assert "HTTP 302" in str(info.value) and "not followed" in str(info.value)
        assert len(arxiv.requests) == 1 and elsewhere.requests == []
        # Another port is another host; another path on the same one is followed.
        arxiv.redirect_to = arxiv.url.replace("/api/query", "/api/moved")
        assert set(fetch_arxiv_papers(arxiv.url, ["2311.12092"], timeout=5)) == {"2311.12092"}
        assert len(arxiv.requests) == 3


def test_connection_refused(out_dir):
    base = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(FetchError) as info:
        fetch_day(base, DAY, out_dir, timeout=2)
    assert "cannot connect" in str(info.value)
    assert str(info.value).startswith(base)
    assert_nothing_written(out_dir)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"400\r\n[{\"paper\": {\"id\": \"2503.07605\"",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        b"[{\"paper\": {\"id\": \"2503.07605\"",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"",
    ],
    ids=["truncated-chunked", "truncated-length", "not-http", "closed"],
)
def test_broken_answer(api_server, out_dir, raw):
    api_server.answer = Answer(raw=raw)
    with pytest.raises(FetchError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert str(info.value).startswith(api_server.base_url)
    assert_nothing_written(out_dir)


def test_deeply_nested_answer(api_server, out_dir):
    api_server.answer = Answer(body=b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(NewsletterError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert "nested too deeply" in str(info.value)
    assert_nothing_written(out_dir)


@pytest.mark.parametrize(
    "body",
    [b"<!doctype html><title>Hugging Face</title>", b"", b'[{"paper": ', b"\xff\xfe not json"],
    ids=["html", "empty", "truncated", "binary"],
)
def test_body_not_json(api_server, out_dir, body):
    api_server.answer = Answer(body=body, content_type="text/html")
    with pytest.raises(FetchError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert "not JSON" in str(info.value)
    assert_nothing_written(out_dir)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"paper": {"id": "2503.07605", "title": "Only A Title"}}]', "entry 1"),
        (b'[{"paper": {"id": "not-an-id", "title": "T", "summary": "A."}}]', "entry 1"),
        (b'{"error": "Invalid date"}', "unrecognised JSON"),
        (b"42", "unrecognised JSON"),
    ],
)
def test_body_json_but_not_a_batch(api_server, out_dir, body, message):
    api_server.answer = Answer(body=body)
    with pytest.raises(BatchError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert message in str(info.value)
    assert str(info.value).startswith(api_server.base_url)
    assert_nothing_written(out_dir)


def test_answer_over_the_size_limit(api_server, out_dir, monkeypatch):
    monkeypatch.setattr(fetch_module, "MAX_FILE_BYTES", 100)
    with pytest.raises(FetchError) as info:
        fetch_day(api_server.base_url, DAY, out_dir, timeout=5)
    assert "larger than 100 bytes" in str(info.value)
    assert_nothing_written(out_dir)


def test_unwritable_out_dir_is_an_output_error(api_server, isolated):
    blocker = isolated / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError):
        fetch_day(api_server.base_url, DAY, blocker, timeout=5)
    assert blocker.read_text() == "not a folder"


# --------------------------------------------------------------------------
# through the command line


def test_cli_fetch(api_server, out_dir):
    from newsletter.cli import cli

    result = CliRunner().invoke(
        cli, ["fetch", "--date", "2025-03-11", "--out", str(out_dir)],
        env={"NEWSLETTER_API_BASE_URL": api_server.base_url},
    )
    assert result.exit_code == 0, result.output
    assert result.exception is None
    path = out_dir / "2025-03-11.json"
    assert "Fetched 4 papers for 2025-03-11" in result.stdout
    assert str(path) in result.stdout
    assert load_batch(path).papers == load_batch(API_JSON).papers
    assert api_server.requests[0]["path"] == "/api/daily_papers?date=2025-03-11"


def test_cli_fetch_warns_of_removed_control_characters(api_server, out_dir, tmp_path):
    from newsletter.cli import cli

    entries = json.loads(API_JSON.read_bytes())
    entries[1]["paper"]["summary"] = "\x00" + entries[1]["paper"]["summary"] + "\x07"
    api_server.answer = Answer(body=json.dumps(entries).encode())
    title = " ".join(entries[1]["paper"]["title"].split())
    env = {"NEWSLETTER_API_BASE_URL": api_server.base_url}
    result = CliRunner().invoke(cli, ["fetch", "--date", "2025-03-11", "--out", str(out_dir)], env=env)
    assert result.exit_code == 0, result.output
    url = f"{api_server.base_url}/api/daily_papers?date=2025-03-11"
    shown = title if len(title) <= 60 else title[:59].rstrip() + "…"
    assert result.stderr == (f'Warning: {url}, entry 2 ("{shown}"): removed 2 control characters '
                             "from the abstract\n")
    saved = load_batch(out_dir / "2025-03-11.json")
    assert saved.warnings == ()  # the saved batch is the repaired one
    assert saved.papers == load_batch(API_JSON).papers

    # `send --fetch` shows the same warning, once.
    env.update(NEWSLETTER_SECRET_KEY=SECRET, NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'n.db'}",
               NEWSLETTER_OUTBOX_DIR=str(tmp_path / "outbox"))
    open_store(env["NEWSLETTER_DATABASE_URL"]).close()  # send never creates one
    result = CliRunner().invoke(cli, ["send", "--fetch", "--date", "2025-03-11", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("Warning: ") == 1 and "entry 2" in result.stderr


def test_cli_fetch_http_error_is_one_line(api_server, out_dir):
    from newsletter.cli import cli

    api_server.answer = Answer(status=500, body=b"oops")
    result = CliRunner().invoke(
        cli, ["fetch", "--date", "2025-03-11", "--out", str(out_dir)],
        env={"NEWSLETTER_API_BASE_URL": api_server.base_url},
    )
    assert result.exit_code == FetchError.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: ") and "HTTP 500" in lines[0]
    assert "Traceback" not in result.output
    assert_nothing_written(out_dir)
