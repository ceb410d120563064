"""Paper thumbnails: the web app's own copy of the picture a source gives of
a paper (the daily papers API's ``thumbnail``), made when the day is stored
with ``NEWSLETTER_THUMBNAILS`` on.

Emails and pages show the copy, served by the web app at
``/papers/<key>/thumbnail.png``, never the source's address: a reader's
mail client then asks no third party for anything, and every reader gets
the same URL. The copy is a PNG at most :data:`MAX_WIDTH` pixels wide.

A thumbnail is untrusted data from the network: its download has a
deadline and a size cap, and the picture a cap on its pixels before it is
decoded (a small file can hold a huge picture).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from newsletter.core.errors import FetchError, ThumbnailError
from newsletter.core.models import Thumbnail
from newsletter.papers.fetch import download

MAX_BYTES = 5 * 1024 * 1024  # the largest download accepted
MAX_WIDTH = 600  # the copy's width at most, in pixels (twice a card's picture, for sharp screens)
MAX_PIXELS = 40_000_000  # a picture with more is refused before it is decoded
ACCEPT = "image/png, image/jpeg, image/webp, image/gif;q=0.8"
_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # the formats opened; any other is refused


def make_thumbnail(data: bytes, source: str) -> Thumbnail:
    """Return ``data`` (a PNG, JPEG, WebP or GIF picture; its first frame)
    as a :class:`Thumbnail`: a PNG at most :data:`MAX_WIDTH` pixels wide,
    its proportions kept, optimized.

    Raises :class:`ThumbnailError` naming ``source`` for data that is not a
    picture of those formats, is broken, or holds more than
    :data:`MAX_PIXELS` pixels.
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on pictures past its own bomb limit;
            # ours is lower and checked before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as image:
                width, height = image.size
                if width < 1 or height < 1 or width * height > MAX_PIXELS:
                    raise ThumbnailError(f"{source}: the picture is {width}×{height} pixels; "
                                         f"the limit is {MAX_PIXELS:,} pixels")
                image.load()
                picture = image.convert("RGBA" if _has_alpha(image) else "RGB")
    except ThumbnailError:
        raise
    except UnidentifiedImageError as exc:
        raise ThumbnailError(f"{source}: not a PNG, JPEG, WebP or GIF picture") from exc
    except Exception as exc:  # noqa: BLE001
        # Any failure of the decoders on untrusted bytes (OSError and
        # ValueError mostly, but struct.error, IndexError… too) means a
        # broken picture: never a failed send.
        raise ThumbnailError(f"{source}: the picture is broken ({type(exc).__name__}: {exc})") from exc
    if picture.width > MAX_WIDTH:
        height = max(1, round(picture.height * MAX_WIDTH / picture.width))
        picture = picture.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return Thumbnail(out.getvalue(), picture.width, picture.height)


def _has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` has transparency to keep."""
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def copy_thumbnail(url: str, timeout: float) -> Thumbnail:
    """Download the picture at ``url`` within ``timeout`` seconds (at most
    :data:`MAX_BYTES`, a redirect followed only on the same host) and return
    it made a thumbnail (see :func:`make_thumbnail`).

    Raises :class:`ThumbnailError` for a failed download (network, HTTP
    status, timeout, too large) or a picture that cannot be read.
    """
    try:
        data = download(url, timeout, accept=ACCEPT, max_bytes=MAX_BYTES)
    except FetchError as exc:
        raise ThumbnailError(str(exc)) from exc
    return make_thumbnail(data, url)
