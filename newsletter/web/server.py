"""Running the web app under waitress (``newsletter serve``)."""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask

from newsletter.web.app import SECURITY_HEADERS


def run_server(app: Flask, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``app`` with waitress on ``host``:``port`` until Ctrl-C, after
    calling ``announce`` with its address; then stop its reader-action
    worker, if it has one.

    waitress answers some malformed requests itself (400, 413, 431) without
    calling the app; those answers carry the security headers too. What
    waitress cannot cover (TLS, requests it drops) is the reverse proxy's
    part (see docs/guides/web-app.md). With the app's ``NEWSLETTER_PROXY_COUNT``
    set, waitress takes the client's address from X-Forwarded-For (see
    :func:`proxy_adjustments`).
    """
    from waitress import create_server
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class SecureErrorTask(ErrorTask):
        def execute(self):
            self.response_headers.extend(SECURITY_HEADERS.items())
            super().execute()

    class SecureChannel(HTTPChannel):
        error_task_class = SecureErrorTask

    app_state = app.extensions.get("newsletter")
    proxy_count = app_state.settings.proxy_count if app_state is not None else 0
    server = create_server(app, host=host, port=port, threads=8, ident="newsletter",
                           **proxy_adjustments(proxy_count))
    server.channel_class = SecureChannel  # used for every connection accepted from now on
    # waitress's proxy-header layer answers a malformed X-Forwarded-For
    # itself (400), outside the app.
    server.application = with_security_headers(server.application)
    announce(f"http://{host}:{server.effective_port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if app_state is not None:
            app_state.actions.stop()


def proxy_adjustments(proxy_count: int) -> dict[str, Any]:
    """Return waitress's settings for ``proxy_count`` reverse proxies in
    front of it, each appending its peer's address to X-Forwarded-For
    (``NEWSLETTER_PROXY_COUNT``; none for 0).

    From waitress's documentation (*Arguments to waitress.serve*):
    ``clear_untrusted_proxy_headers`` "tells Waitress to remove any untrusted
    proxy headers … not explicitly allowed by ``trusted_proxy_headers``"
    (default ``True``), so unless told to trust the proxy waitress drops
    X-Forwarded-For before the app sees it, and behind a proxy every reader
    would be one client. ``trusted_proxy`` is the "IP address of a remote
    peer allowed to override various WSGI environment variables using proxy
    headers"; "The value ``*`` (wildcard) may be used to signify that all
    remote peers are to be trusted", which "is a security issue if Waitress
    is receiving connections from untrusted locations": setting a proxy
    count already says that only the proxies reach ``serve`` (see the
    docs/guides/web-app.md). ``trusted_proxy_count``, "How many proxies we trust when
    chained": of ``X-Forwarded-For: 192.0.2.1, "[2001:db8::1]"`` with one,
    "that initial IP address "192.0.2.1" is not trusted and we completely
    ignore it". So the client is the entry our outermost proxy appended,
    whatever a client wrote before it. ``trusted_proxy_headers``, "Which of the proxy headers
    should we trust": X-Forwarded-For only, as the app needs no other (its
    links come from ``NEWSLETTER_BASE_URL``); the others are still cleared.

    waitress then sets ``REMOTE_ADDR`` to the client and keeps only the last
    ``proxy_count`` entries of the header. The app's own ProxyFix (for any
    WSGI server: ``create_app``) reads the same count from that header and
    finds the same address, so the hops are not stripped twice. Without a
    proxy waitress clears the header and the app has no ProxyFix: an
    X-Forwarded-For sent by a client is never taken.
    """
    if not proxy_count:
        return {}
    return {"trusted_proxy": "*", "trusted_proxy_count": proxy_count, "trusted_proxy_headers": {"x-forwarded-for"},
            "clear_untrusted_proxy_headers": True}


def with_security_headers(application: Callable) -> Callable:
    """Return the WSGI ``application`` with the security headers added to
    every answer that lacks them (what the app answers has them already)."""
    def secured(environ, start_response):
        def start(status, headers, exc_info=None):
            present = {name.lower() for name, _value in headers}
            headers = [*headers, *((name, value) for name, value in SECURITY_HEADERS.items()
                                   if name.lower() not in present)]
            return start_response(status, headers, exc_info)
        return application(environ, start)
    return secured
