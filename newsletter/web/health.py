"""``GET /healthz``: ``{"status": "ok"}`` when the database answers, 503 otherwise."""

from __future__ import annotations

from flask import Blueprint, Response

from newsletter.core.errors import StoreError
from newsletter.web.app import state

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    try:
        state().store.ping()
    except StoreError:
        return Response('{"status": "database unreachable"}', status=503, mimetype="application/json")
    return Response('{"status": "ok"}', mimetype="application/json")
