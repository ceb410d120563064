"""Running the web app under waitress (``newsletter serve``)."""

from __future__ import annotations

from typing import Callable

from flask import Flask

from newsletter.web.app import SECURITY_HEADERS


def run_server(app: Flask, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``app`` with waitress on ``host``:``port`` until Ctrl-C, after
    calling ``announce`` with its address; then stop its reader-action
    worker, if it has one.

    waitress answers some malformed requests itself (400, 413, 431) without
    calling the app; those answers carry the security headers too. What
    waitress cannot cover (TLS, requests it drops) is the reverse proxy's
    part (see the README).
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

    server = create_server(app, host=host, port=port, threads=8, ident="newsletter")
    server.channel_class = SecureChannel  # used for every connection accepted from now on
    announce(f"http://{host}:{server.effective_port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        app_state = app.extensions.get("newsletter")
        if app_state is not None:
            app_state.actions.stop()
