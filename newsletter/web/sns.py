"""``POST /sns``: SES bounce, complaint and delivery notifications through
SNS. Malformed input (not JSON, a field of the wrong type...) is a 400; well
formed but not trusted (forged, foreign topic, too old) a 403. Either way
nothing has changed."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from newsletter.core.errors import SnsError, SnsMalformed
from newsletter.feedback.events import handle_sns
from newsletter.feedback.sns import parse_envelope
from newsletter.web.app import state

log = logging.getLogger("newsletter.web")
blueprint = Blueprint("sns", __name__)


@blueprint.post("/sns")
def sns() -> Response:
    app = state()
    try:
        outcome = handle_sns(parse_envelope(request.get_data()), app.verifier, app.store)
    except SnsMalformed as exc:
        log.warning("refused a malformed SNS message: %s", exc)
        return Response("malformed SNS message\n", status=400, mimetype="text/plain")
    except SnsError as exc:
        log.warning("refused an SNS message: %s", exc)
        return Response("refused\n", status=403, mimetype="text/plain")
    log.info("SNS: %s", outcome)
    return Response("ok\n", mimetype="text/plain")
