"""Paper thumbnails (NEWSLETTER_THUMBNAILS): read from the source, copied
and made small when the day is stored, flagged on the planned editions'
papers, and served by the web app at /papers/<key>/thumbnail.png. Every
picture comes from a local server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from conftest import SECRET, clean_env, free_port, newsletter_server
from newsletter.core.config import Settings
from newsletter.core.errors import ThumbnailError
from newsletter.core.models import Batch, Paper, paper_key, thumbnail_path
from newsletter.papers.batches import load_batch, parse_batch, write_canonical
from newsletter.papers.thumbnails import MAX_BYTES, MAX_PIXELS, MAX_WIDTH, copy_thumbnail, make_thumbnail
from newsletter.sending.plan import plan_run

FIXTURES = Path(__file__).parent / "fixtures"
DAY = dt.date(2025, 3, 11)


def picture(width: int, height: int, kind: str = "PNG", mode: str = "RGB") -> bytes:
    """A picture of ``width`` × ``height`` pixels in ``kind``, made with Pillow."""
    out = io.BytesIO()
    Image.new(mode, (width, height), (30, 120, 200) if mode == "RGB" else (30, 120, 200, 128)).save(out, format=kind)
    return out.getvalue()


class PictureServer:
    """Serves ``pictures`` ({path: (content type, bytes)}) on 127.0.0.1;
    any other path is a 404. Records every path asked for."""

    def __init__(self, pictures: dict[str, tuple[str, bytes]]):
        self.pictures = pictures
        self.requests: list[str] = []

    def __enter__(self) -> "PictureServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server name)
                server.requests.append(self.path)
                kind, body = server.pictures.get(self.path, ("text/plain", None))
                self.send_response(404 if body is None else 200)
                body = b"not found" if body is None else body
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def pictures():
    with PictureServer({
        "/wide.png": ("image/png", picture(1200, 630)),
        "/small.jpg": ("image/jpeg", picture(300, 200, "JPEG")),
        "/broken.png": ("image/png", b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 10),
        "/huge.png": ("image/png", b"\0" * (MAX_BYTES + 1)),
    }) as server:
        yield server


def paper(n: int, thumbnail: str | None, arxiv_id: str | None = None) -> Paper:
    return Paper(title=f"Paper number {n}", abstract=f"We study thing {n}. It works.",
                 arxiv_id=arxiv_id or f"2503.{n:05d}", thumbnail_url=thumbnail, upvotes=100 - n)


def day_of(server: PictureServer) -> Batch:
    """A day whose papers point at ``server``: a wide PNG, a small JPEG, a
    broken picture, a missing one, one too large, and one with none."""
    return Batch(DAY, (
        paper(1, server.url("/wide.png")),
        paper(2, server.url("/small.jpg")),
        paper(3, server.url("/broken.png")),
        paper(4, server.url("/missing.png")),
        paper(5, server.url("/huge.png")),
        paper(6, None),
    ), source="day.json")


def decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image


# --------------------------------------------------------------------------
# the source


def test_the_api_gives_each_paper_its_thumbnail_and_batch_files_keep_it(tmp_path):
    batch = load_batch(FIXTURES / "api" / "daily_papers.json")
    by_id = {p.arxiv_id: p for p in batch.papers}
    assert by_id["2503.07605"].thumbnail_url == (
        "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2503.07605.png")
    again = load_batch(write_canonical(batch, tmp_path / "day.json"))
    assert [p.thumbnail_url for p in again.papers] == [p.thumbnail_url for p in batch.papers]
    assert not any(p.thumbnail_stored for p in again.papers)  # only a send's plan sets it


@pytest.mark.parametrize("value, kept", [
    ("https://example.org/a.png", "https://example.org/a.png"),
    ("javascript:alert(1)", None), ("data:image/png;base64,AAAA", None), ("", None), (None, None),
])
def test_only_a_web_address_is_kept_as_a_thumbnail(value, kept):
    entry = {"paper": {"id": "2503.00001", "title": "A title", "summary": "An abstract."},
             "publishedAt": "2025-03-11T00:00:00Z", "thumbnail": value}
    [found] = parse_batch(json.dumps([entry]).encode(), "api.json").papers
    assert found.thumbnail_url == kept


# --------------------------------------------------------------------------
# the copy


def test_a_wide_picture_is_made_a_png_600_pixels_wide_in_proportion():
    made = make_thumbnail(picture(1200, 630), "wide.png")
    assert (made.width, made.height) == (MAX_WIDTH, 315)
    assert decoded(made.png).size == (MAX_WIDTH, 315)


def test_a_narrow_picture_keeps_its_size_and_its_transparency():
    made = make_thumbnail(picture(300, 200, "PNG", mode="RGBA"), "small.png")
    image = decoded(made.png)
    assert image.size == (300, 200) and image.mode == "RGBA"


@pytest.mark.parametrize("data, problem", [
    (picture(200, 100, "JPEG")[:300], "broken"),  # cut off
    (b"<html>not a picture</html>", "not a PNG, JPEG, WebP or GIF picture"),
    (picture(64, 64, "BMP"), "not a PNG, JPEG, WebP or GIF picture"),
])
def test_what_is_not_a_readable_picture_is_refused(data, problem):
    with pytest.raises(ThumbnailError, match=problem):
        make_thumbnail(data, "x.png")


def test_a_picture_of_too_many_pixels_is_refused_before_it_is_decoded():
    side = int(MAX_PIXELS ** 0.5) + 10
    # A black-and-white PNG of one colour: a few kilobytes, whatever its size.
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG")
    assert len(out.getvalue()) < 100_000
    with pytest.raises(ThumbnailError, match="pixels"):
        make_thumbnail(out.getvalue(), "bomb.png")


def test_a_download_that_fails_is_a_thumbnail_error(pictures):
    with pytest.raises(ThumbnailError, match="HTTP 404"):
        copy_thumbnail(pictures.url("/missing.png"), timeout=10)
    with pytest.raises(ThumbnailError, match="larger than"):
        copy_thumbnail(pictures.url("/huge.png"), timeout=10)
    assert copy_thumbnail(pictures.url("/small.jpg"), timeout=10).width == 300


# --------------------------------------------------------------------------
# storing the day


def test_storing_the_day_with_thumbnails_on_copies_them_and_flags_the_papers(store, pictures):
    batch = day_of(pictures)
    plan = plan_run(Settings(thumbnails=True), store, DAY, batch)

    wide, small = store.thumbnail("2503.00001"), store.thumbnail("2503.00002")
    assert (wide.width, wide.height) == (600, 315) and decoded(wide.png).size == (600, 315)
    assert (small.width, small.height) == (300, 200) and decoded(small.png).size == (300, 200)
    assert store.stored_thumbnail_keys(paper_key(p) for p in batch.papers) == {"2503.00001", "2503.00002"}
    assert store.thumbnail_size("2503.00001") == (600, 315)

    # The failures are notes, one each, and the send goes on.
    notes = [note for note in plan.notes if note.startswith("No thumbnail for")]
    assert len(notes) == 3, plan.notes
    assert any("2503.00003" in n and "broken" in n for n in notes)
    assert any("2503.00004" in n and "HTTP 404" in n for n in notes)
    assert any("2503.00005" in n and "larger than" in n for n in notes)
    [daily] = plan.editions
    assert [p.thumbnail_stored for p in daily.papers] == [True, True, False, False, False, False]
    # The source's address is kept with the paper, for the archive.
    assert store.papers(["2503.00001"])["2503.00001"].thumbnail_url == pictures.url("/wide.png")

    # Stored again, only those without a copy are tried again.
    asked = len(pictures.requests)
    again = plan_run(Settings(thumbnails=True), store, DAY, batch)
    assert sorted(pictures.requests[asked:]) == ["/broken.png", "/huge.png", "/missing.png"]
    assert [p.thumbnail_stored for p in again.editions[0].papers][:2] == [True, True]


def test_a_run_from_the_stored_day_flags_the_papers_that_have_a_copy(store, pictures):
    plan_run(Settings(thumbnails=True), store, DAY, day_of(pictures))
    asked = len(pictures.requests)
    plan = plan_run(Settings(thumbnails=True), store, DAY)  # `send --date`: from the store
    assert len(pictures.requests) == asked
    assert [paper_key(p) for p in plan.editions[0].papers if p.thumbnail_stored] == ["2503.00001", "2503.00002"]


def test_with_thumbnails_off_nothing_is_downloaded_copied_or_flagged(store, pictures):
    plan = plan_run(Settings(), store, DAY, day_of(pictures))
    assert pictures.requests == []
    assert store.stored_thumbnail_keys(["2503.00001", "2503.00002"]) == set()
    assert not any(p.thumbnail_stored for p in plan.editions[0].papers)
    assert not any(note.startswith("No thumbnail") for note in plan.notes)
    # Copies made while the setting was on are not shown once it is off.
    plan_run(Settings(thumbnails=True), store, DAY, day_of(pictures))
    assert not any(p.thumbnail_stored for p in plan_run(Settings(), store, DAY).editions[0].papers)


def test_the_send_command_copies_the_thumbnails_and_prints_the_failures(env, cli_run, db, pictures, tmp_path):
    batch = day_of(pictures)
    path = write_canonical(batch, tmp_path / "day.json")
    result = cli_run("send", str(path), "--dry-run", NEWSLETTER_THUMBNAILS="on")
    assert result.exit_code == 0, result.output
    assert "No thumbnail for 2503.00004" in result.output
    assert db.stored_thumbnail_keys(["2503.00001", "2503.00002", "2503.00003"]) == {"2503.00001", "2503.00002"}


# --------------------------------------------------------------------------
# the web app


def stored_with_thumbnail(store, pictures, arxiv_id: str = "2503.00001") -> Paper:
    kept = paper(1, pictures.url("/wide.png"), arxiv_id=arxiv_id)
    plan_run(Settings(thumbnails=True), store, DAY, Batch(DAY, (kept, paper(2, None)), source="day.json"))
    return kept


@pytest.mark.parametrize("arxiv_id", ["2503.00001", "hep-th/9901001"])
def test_the_web_app_serves_the_stored_copy(store, web_client, pictures, arxiv_id):
    stored_with_thumbnail(store, pictures, arxiv_id)
    client = web_client()
    response = client.get(thumbnail_path(arxiv_id))
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert "public" in response.headers["Cache-Control"] and "max-age=31536000" in response.headers["Cache-Control"]
    assert decoded(response.data).size == (600, 315)
    # Whatever the setting now: emails already sent show it.
    assert web_client(thumbnails=False).get(thumbnail_path(arxiv_id)).status_code == 200


def test_no_stored_copy_is_a_404(store, web_client, pictures):
    stored_with_thumbnail(store, pictures)
    client = web_client()
    assert client.get(thumbnail_path("2503.00002")).status_code == 404  # stored, without a thumbnail
    assert client.get(thumbnail_path("2503.99999")).status_code == 404  # no such paper
    assert client.get("/papers/2503.00002").status_code == 200  # the paper's page is still its page


def test_the_paper_page_shows_the_thumbnail_with_alt_text_when_on(store, web_client, pictures):
    kept = stored_with_thumbnail(store, pictures)
    page = web_client(thumbnails=True).get("/papers/2503.00001").get_data(as_text=True)
    assert (f'<img src="/papers/2503.00001/thumbnail.png" width="600" height="315" '
            f'alt="Figure from {kept.title}">') in page
    assert pictures.url("/wide.png") not in page  # never the source's address
    assert "<img" not in web_client(thumbnails=False).get("/papers/2503.00001").get_data(as_text=True)
    assert "<img" not in web_client(thumbnails=True).get("/papers/2503.00002").get_data(as_text=True)


def test_a_real_server_serves_the_thumbnail(store, database_url, pictures, tmp_path):
    stored_with_thumbnail(store, pictures)
    port = free_port()
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}", NEWSLETTER_THUMBNAILS="on")
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env) as base:
        with urllib.request.urlopen(base + thumbnail_path("2503.00001"), timeout=10) as response:
            assert response.headers["Content-Type"] == "image/png"
            assert decoded(response.read()).size == (600, 315)
        with urllib.request.urlopen(base + "/papers/2503.00001", timeout=10) as response:
            assert 'alt="Figure from Paper number 1"' in response.read().decode()
