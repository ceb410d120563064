"""A stand-in for the Amazon SES v2 API, for the newsletter's tests and benchmarks.

``SesV2StandIn`` is a small HTTP server on 127.0.0.1 that speaks the SES v2
wire protocol (rest-json) well enough for a real boto3 ``sesv2`` client::

    from sesv2_standin import SesV2StandIn

    with SesV2StandIn(max_send_rate=14) as ses:
        client = ses.client()
        client.send_email(Content={"Raw": {"Data": mime_bytes}})
        assert ses.sent[0].to == ["reader@example.com"]

It never contacts AWS or any other host. Requests are routed and checked
with botocore's own ``sesv2`` service model: the operation is found by HTTP
method and ``requestUri``, and the request's members are checked against
the operation's input shape (unknown or missing required members, types,
enums, lengths, list sizes, ranges and patterns), and blobs are base64
decoded, all as that model describes. A failing check is answered with a
``BadRequestException``.

What is implemented is what the newsletter calls: GetAccount (its quota,
and whether it left the sandbox), CreateEmailTemplate, UpdateEmailTemplate
and DeleteEmailTemplate (the issue's template), TestRenderEmailTemplate
(the bulk mode's pre-flight), SendBulkEmail with a stored template (the
bulk mode), SendEmail with Raw content (the raw mode, sign-up
confirmations), and for ``newsletter doctor`` GetEmailIdentity,
GetConfigurationSet and GetConfigurationSetEventDestinations. Anything
else is answered with HTTP 501 and error code ``NotImplemented``: the
model's other operations, SendEmail with Simple or Template content, a bulk
call's inline template or template ARN, and Cc or Bcc recipients (in a
Destination or in a raw message's headers). Reply-to addresses, tags and
attachments are accepted and not recorded.

Templates (SES templates are Handlebars; only this subset is implemented,
enough to show whether text meant literally, such as a paper's ``{{``,
reaches the template engine):

* ``{{path}}``, ``{{{path}}}`` and ``{{&path}}`` are replaced by the value
  at ``path`` in the template data, as it is, in every part: "SES doesn't
  escape HTML content when rendering the HTML template for a message"
  (SES developer guide, *Advanced email personalization*).
* ``{{! comment }}`` is removed.
* ``path`` is one or more names of letters, digits, ``_``, ``-`` or ``$``
  joined by dots (``{{user.name}}``). Whitespace inside the braces is
  allowed (``{{ name }}``).
* Template data is a JSON object. A template without blocks is rendered by
  this subset, where only string values count (a dotted path never has a
  value); a template with blocks anywhere (``{{#if}}``, ``{{#each}}``,
  ``{{else}}``, ``../``: the issue's picks section) is rendered by pybars3,
  a port of Handlebars.js, whole (with its escaping turned off).
* "All variables that you include in the template must have an exact
  case-sensitive counterpart in the template data": a name the template
  uses anywhere (plainly, in ``{{#if}}`` or ``{{#unless}}`` and both their
  branches, in ``{{#each}}`` for each item, ``../`` paths included) that
  the data lacks, or whose value is null, fails the message. SES accepts
  it (the entry's status is ``SUCCESS``, with a message id) and drops it
  later with a Rendering Failure: it is not in ``.sent``; instead a
  Rendering Failure event, as SES publishes it to a configuration set's
  destinations (``eventType``, ``mail``, ``failure`` with
  ``templateName`` and ``errorMessage``), is added to ``.events`` and
  passed to ``on_event`` when one is given.
* TestRenderEmailTemplate renders a stored template with the given data
  and answers the MIME message, or ``BadRequestException`` with the
  rendering error (a missing name) or ``NotFoundException``. SES allows it
  one call a second: with ``render_rate`` (calls a second, default
  unlimited) a faster call is answered ``TooManyRequestsException``.
* In a template without blocks, anything else in braces (partials,
  helpers with arguments) is left in the output verbatim, so a test can
  see it was not understood.
* Bulk sends use the entry's ``ReplacementTemplateData`` merged over the
  default ``TemplateData`` (top-level keys; the entry wins). Headers are
  merged as SES documents it: an entry's ``ReplacementHeaders`` replace
  default headers of the same name (case-insensitive), others are added.
  Headers are not template-substituted.

Sending rules. First, for the whole call, a ``BadRequestException`` if a
sender (FromEmailAddress, or the From header for Raw) is missing, an
address has no ``@``, a message has no recipients or more than 50, a bulk
call has more than 50 entries, a SendEmail's Content has not exactly one
kind, or the default TemplateData is not a JSON object. Then, in this
order, for each message (a bulk entry, or a single SendEmail):

1. ``account_error(...)`` set: the whole call fails with that error.
2. Template missing: ``TEMPLATE_NOT_FOUND`` for every entry.
3. Bad per-entry template data (not a JSON object): ``INVALID_PARAMETER``.
4. A recipient matched by ``reject_addresses(...)``: ``MESSAGE_REJECTED``
   (bulk) or ``MessageRejected`` (single).
5. A header that may appear once (SES's list: From, Subject, Message-ID,
   List-Unsubscribe, ...) appears twice: ``MessageRejected`` /
   ``MESSAGE_REJECTED`` with "Duplicate header 'X'.".
6. Daily quota: ``SentLast24Hours + recipients > Max24HourSend`` ->
   ``LimitExceededException`` "Daily message quota exceeded." (single) or
   ``ACCOUNT_DAILY_QUOTA_EXCEEDED`` (bulk). ``max_24_hour_send < 0`` (SES's
   "-1") or ``inf`` means no daily quota.
7. Rate: a token bucket refilled at ``max_send_rate`` tokens/s, holding at
   most ``max(1, max_send_rate)`` tokens, starting full. Each recipient
   costs a token. A message fits when the bucket holds at least
   ``min(recipients, capacity)`` tokens; it then takes all its tokens,
   which may leave the bucket in debt (so a message with more recipients
   than the burst capacity is accepted only from a full bucket, and the
   long-run rate still holds). A single send that does not fit is answered
   HTTP 429 ``TooManyRequestsException`` "Maximum sending rate exceeded.".
   For bulk, ``throttle_style="entries"`` (default) accepts entries in
   order while they fit and answers the rest ``ACCOUNT_THROTTLED``;
   ``throttle_style="call"`` answers the whole call 429 unless all its
   remaining entries fit together. ``max_send_rate=inf`` disables it. The
   bucket reads the time from ``clock`` (``time.monotonic`` unless given),
   so a test can move time on instead of sleeping.

The account's set-up (read by ``newsletter doctor``; none of it is
created through the API, a test sets it):

* ``production_access`` and ``sending_enabled`` (constructor keywords, or
  ``set_account(...)``) are GetAccount's ``ProductionAccessEnabled`` and
  ``SendingEnabled``. With sending disabled every send is answered
  ``SendingPausedException``, as with ``account_error(...)``; the sandbox
  itself is only reported (recipients are not checked).
* ``add_identity(name, verified=, dkim=, dkim_signing=, mail_from=,
  mail_from_status=, behavior_on_mx_failure=)``: a domain, or an address
  when the name has an ``@``, answered by GetEmailIdentity (names match
  case-insensitively). An identity with no custom MAIL FROM domain is
  answered with an empty ``MailFromDomain`` (the model makes the three
  ``MailFromAttributes`` members required). ``remove_identity(name)``.
* ``add_configuration_set(name, sending_enabled=)`` and
  ``add_event_destination(set, name, event_types, sns_topic_arn=,
  enabled=)``: answered by GetConfigurationSet and
  GetConfigurationSetEventDestinations. ``remove_configuration_set(name)``.
* An unknown identity or configuration set is answered 404
  ``NotFoundException``, as SES does. Statuses and event types are checked
  against the model's enums when they are set.

Everything accepted adds its recipients to ``SentLast24Hours`` (it only
grows; there is no rolling 24-hour window) and is recorded as a
``SentMessage`` in ``.sent``. A message counts as accepted only if the
stand-in answers success for it (or, with ``drop_next``, would have).

Fault injection (thread-safe; ``operation`` is an operation name, a
collection of names, or None for any request, GetAccount included):

* ``fail_next(n, status=500, error_type="InternalFailure")`` and
  ``throttle_next(n)`` answer the next ``n`` matching requests with that
  error, before the request is parsed: nothing it asked for is accepted.
* ``drop_next(n)`` handles the next ``n`` matching requests normally, then
  closes the connection with no answer: what they sent is accepted and
  recorded, and the client cannot know (an "outcome unknown").
* ``hold_next(n)`` makes the next ``n`` matching requests wait, before
  they are handled, until ``release()``; ``held`` is how many wait now. A
  client that gives up meanwhile gets an error, but its request is still
  handled once released, so its message is accepted: the other "outcome
  unknown" case. A rule takes at most one request each of these kinds,
  the oldest queued rule that matches.
* ``reject_addresses(...)`` and ``account_error(...)`` last until cleared.

``busy`` is how many requests the stand-in is handling at this moment
(held ones included), so a test can wait until it is idle.

Errors follow rest-json: the status code of the error shape in the model,
an ``x-amzn-ErrorType`` header naming it and a JSON body
``{"message": ...}``; botocore raises ``ClientError`` with
``e.response["Error"]["Code"]`` set to the name.

This module imports no pytest, so benchmarks can use it too (put the
``tests`` folder on ``sys.path``).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import email.message
import email.parser
import email.policy
import email.utils
import functools
import http.server
import itertools
import json
import math
import os
import re
import socket
import secrets
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Any, Callable, Collection, Iterable, NamedTuple

import botocore.session

__all__ = ["SesV2StandIn", "SentMessage", "RequestRecord", "service_model"]

MAX_BULK_ENTRIES = 50
MAX_RECIPIENTS = 50
RATE_MESSAGE = "Maximum sending rate exceeded."
DAILY_MESSAGE = "Daily message quota exceeded."
REJECT_ERROR = (
    "Email address is not verified. The following identities failed the "
    "check in region US-EAST-1: {address}"
)

# Headers SES allows at most once in a message (its "header fields" page).
UNIQUE_HEADERS = frozenset(
    h.lower()
    for h in """Accept-Language acceptLanguage Archived-At Auto-Submitted
    Bounces-to Comments Content-Alternative Content-Base Content-Class
    Content-Description Content-Disposition Content-Duration Content-ID
    Content-Language Content-Length Content-Location Content-MD5
    Content-Transfer-Encoding Content-Type Date Delivered-To
    Disposition-Notification-Options Disposition-Notification-To
    DKIM-Signature DomainKey-Signature Errors-To From Importance In-Reply-To
    Keywords List-Archive List-Help List-Id List-Owner List-Post
    List-Subscribe List-Unsubscribe List-Unsubscribe-Post Message-Context
    Message-ID MIME-Version Organization Original-From Original-Message-ID
    Original-Recipient Original-Subject Precedence Priority References
    Reply-To Return-Path Return-Receipt-To Sender Solicitation Sensitivity
    Subject Thread-Index Thread-Topic User-Agent VBR-Info""".split()
)

ACCOUNT_ERROR_MESSAGES = {
    "AccountSuspendedException": "Account is suspended.",
    "SendingPausedException": "Sending is paused for this account.",
}


# --------------------------------------------------------------------------
# The botocore model, routing and request checking


_MODEL_LOCK = threading.Lock()
_MODEL = None


def service_model():
    """botocore's ``sesv2`` ServiceModel (loaded once per process)."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            _MODEL = botocore.session.get_session().get_service_model("sesv2")
        return _MODEL


class ApiError(Exception):
    """An error answer: rest-json status, ``x-amzn-ErrorType`` and message."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else _error_status(code)


def _error_status(code: str) -> int:
    try:
        shape = service_model().shape_for(code)
    except Exception:  # not a modeled error (InternalFailure, ...)
        return 500 if code in ("InternalFailure", "ServiceUnavailable") else 400
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


def _bad(message: str) -> ApiError:
    return ApiError("BadRequestException", message, 400)


class _Invalid(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


class _Route(NamedTuple):
    name: str
    regex: re.Pattern | None
    labels: tuple[str, ...]
    op: Any  # botocore OperationModel


class _Router:
    """Operations of the model, found by HTTP method and path."""

    def __init__(self, model):
        self.literal: dict[tuple[str, str], _Route] = {}
        self.patterns: dict[str, list[_Route]] = collections.defaultdict(list)
        for name in model.operation_names:
            op = model.operation_model(name)
            method = op.http["method"]
            path = op.http["requestUri"].split("?", 1)[0]
            labels = tuple(re.findall(r"\{([^}]+)\}", path))
            if not labels:
                self.literal[(method, path.rstrip("/") or "/")] = _Route(
                    name, None, (), op
                )
                continue
            pattern, names = "", []
            for piece in re.split(r"(\{[^}]+\})", path):
                if piece.startswith("{"):
                    label = piece[1:-1]
                    greedy = label.endswith("+")
                    names.append(label.rstrip("+"))
                    pattern += f"(?P<g{len(names)}>" + (".+" if greedy else "[^/]+") + ")"
                else:
                    pattern += re.escape(piece)
            route = _Route(name, re.compile(pattern + "/?"), tuple(names), op)
            self.patterns[method].append(route)
        for routes in self.patterns.values():
            # More literal text first, so /a/{x}/b wins over /a/{x+}.
            routes.sort(key=lambda r: (-len(r.regex.pattern), len(r.labels)))

    def match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        route = self.literal.get((method, path.rstrip("/") or "/"))
        if route is not None:
            return route, {}
        for route in self.patterns.get(method, ()):
            m = route.regex.fullmatch(path)
            if m:
                values = {
                    name: urllib.parse.unquote(m.group(f"g{i}"))
                    for i, name in enumerate(route.labels, 1)
                }
                return route, values
        return None


@functools.lru_cache(maxsize=None)
def _pattern(source: str) -> re.Pattern | None:
    try:
        return re.compile(source)
    except re.error:
        return None


def _check(shape, value):
    """Check ``value`` (decoded JSON) against a botocore shape.

    Returns the value with blobs base64-decoded and ``null`` members
    dropped; raises ``_Invalid`` naming the first problem.
    """
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise _Invalid(f"expected an object, got {type(value).__name__}")
        members = shape.members
        out = {}
        for key, item in value.items():
            member = members.get(key)
            if member is None:
                raise _Invalid(f"unknown member {key!r} in {shape.name}")
            if item is None:
                continue
            try:
                out[key] = _check(member, item)
            except _Invalid as e:
                e.path.append(key)
                raise
        for key in shape.required_members:
            if key not in out:
                raise _Invalid(f"missing required member {key!r} of {shape.name}")
        return out
    meta = shape.metadata
    if kind == "list":
        if not isinstance(value, list):
            raise _Invalid(f"expected a list, got {type(value).__name__}")
        _check_size(meta, len(value), "items")
        member = shape.member
        out = []
        for i, item in enumerate(value):
            try:
                out.append(_check(member, item))
            except _Invalid as e:
                e.path.append(str(i))
                raise
        return out
    if kind == "string":
        if not isinstance(value, str):
            raise _Invalid(f"expected a string, got {type(value).__name__}")
        if meta:
            _check_size(meta, len(value), "characters")
            enum = meta.get("enum")
            if enum and value not in enum:
                raise _Invalid(f"{value!r} is not one of {', '.join(enum)}")
            if "pattern" in meta:
                regex = _pattern(meta["pattern"])
                # Smithy patterns are not implicitly anchored: search, as AWS.
                if regex is not None and not regex.search(value):
                    raise _Invalid(f"{value!r} does not match {meta['pattern']}")
        return value
    if kind == "blob":
        if isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _Invalid("a blob must be base64") from None
        elif not isinstance(value, (bytes, bytearray)):
            raise _Invalid(f"expected base64 text, got {type(value).__name__}")
        _check_size(meta, len(value), "bytes")
        return bytes(value)
    if kind in ("integer", "long"):
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise _Invalid(f"{value!r} is not an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {type(value).__name__}")
        _check_range(meta, value)
        return value
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"expected a number, got {type(value).__name__}")
        _check_range(meta, value)
        return value
    if kind == "boolean":
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise _Invalid(f"expected a boolean, got {type(value).__name__}")
        return value
    if kind == "map":
        if not isinstance(value, dict):
            raise _Invalid(f"expected an object, got {type(value).__name__}")
        return {
            _check(shape.key, k): _check(shape.value, v) for k, v in value.items()
        }
    return value  # timestamp, document: taken as sent


def _check_size(meta, size, unit):
    if "min" in meta and size < meta["min"]:
        raise _Invalid(f"has {size} {unit}, fewer than the minimum {meta['min']}")
    if "max" in meta and size > meta["max"]:
        raise _Invalid(f"has {size} {unit}, more than the maximum {meta['max']}")


def _check_range(meta, value):
    if "min" in meta and value < meta["min"]:
        raise _Invalid(f"{value} is below the minimum {meta['min']}")
    if "max" in meta and value > meta["max"]:
        raise _Invalid(f"{value} is above the maximum {meta['max']}")


def parse_request(route: _Route, path_values, query: str, headers, body: Any) -> dict:
    """Build and check an operation's input from a decoded request."""
    shape = route.op.input_shape
    if shape is None:
        return {}
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    params = dict(body)
    query_values = urllib.parse.parse_qs(query, keep_blank_values=True) if query else {}
    for name, member in shape.members.items():
        where = member.serialization.get("location")
        if where is None:
            continue
        wire = member.serialization.get("name", name)
        if where == "uri" and wire in path_values:
            params[name] = path_values[wire]
        elif where == "querystring" and wire in query_values:
            items = query_values[wire]
            params[name] = items if member.type_name == "list" else items[-1]
        elif where == "header" and wire in headers:
            params[name] = headers[wire]
    try:
        return _check(shape, params)
    except _Invalid as e:
        where = ".".join(reversed(e.path))
        raise _bad(
            f"Invalid {route.name} request"
            + (f" at {where}" if where else "")
            + f": {e.message}"
        ) from None


# --------------------------------------------------------------------------
# Templates


_TOKEN = re.compile(r"\{\{\{\s*(.*?)\s*\}\}\}|\{\{\s*(.*?)\s*\}\}", re.S)
_PATH = re.compile(r"[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*")
class CompiledTemplate:
    """One template part split into literal text and placeholders.

    ``keys`` are the distinct placeholders' paths;
    ``slots[i]`` is the key that goes between ``literals[i]`` and
    ``literals[i + 1]``, so a value used many times is looked up once.
    """

    __slots__ = ("literals", "keys", "slots")

    def __init__(self, source: str):
        literals: list[str] = []
        keys: dict[str, int] = {}
        slots: list[int] = []
        text: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(source):
            text.append(source[pos : m.start()])
            pos = m.end()
            triple, expr = m.group(1), m.group(2)
            if triple is not None:
                expr = triple
            elif expr.startswith("!"):
                continue  # a comment
            elif expr.startswith("&"):
                expr = expr[1:].strip()
            if expr == "else" or not _PATH.fullmatch(expr):
                text.append(m.group(0))  # not understood: left verbatim
                continue
            literals.append("".join(text))
            text = []
            slots.append(keys.setdefault(expr, len(keys)))
        text.append(source[pos:])
        literals.append("".join(text))
        self.literals = tuple(literals)
        self.keys = tuple(keys)
        self.slots = tuple(slots)

    def resolve(self, data: dict[str, str]) -> tuple[tuple[str, ...], list[str]]:
        """Values of the distinct placeholders, and the paths with no value
        (absent or null). Only a top-level string counts here, so a dotted
        path has none."""
        values: list[str] = []
        missing: list[str] = []
        for path in self.keys:
            value = None if "." in path else data.get(path)
            if value is None:
                if path not in missing:
                    missing.append(path)
                values.append("")
                continue
            value = value if isinstance(value, str) else json.dumps(value)  # true, 3
            values.append(value)
        return tuple(values), missing

    def join(self, values: tuple[str, ...]) -> str:
        lits = self.literals
        out = [lits[0]]
        for slot, lit in zip(self.slots, itertools.islice(lits, 1, None)):
            out.append(values[slot])
            out.append(lit)
        return "".join(out)


@functools.lru_cache(maxsize=256)
def compile_template(source: str) -> CompiledTemplate:
    return CompiledTemplate(source)


class _Rendered:
    """A templated part, joined only when read (so memory stays small)."""

    __slots__ = ("compiled", "values")

    def __init__(self, compiled: CompiledTemplate, values):
        self.compiled = compiled
        self.values = values

    def render(self) -> str:
        return self.compiled.join(self.values)


def render(source: str | None, data: dict) -> str | None:
    """Render one template part with ``data`` (see the module docstring)."""
    if source is None:
        return None
    compiled = compile_template(source)
    values, _ = compiled.resolve(data)
    return compiled.join(values)


# Handlebars beyond placeholders: blocks ({{#if}}, {{#each}}), parent paths.
_BLOCKS = re.compile(r"\{\{\s*[#/^]|\{\{\s*else\s*\}\}|\.\./")


# A plain {{x}} (not a block, comment, partial, else, nor already {{{x}}}):
# made {{{x}}} before pybars3 compiles it, so nothing is escaped, as in SES.
_PLAIN = re.compile(r"(?<!\{)\{\{(?!\{)\s*(?![#/^!>&]|else\s*\}\})([^{}]+?)\s*\}\}(?!\})")
_MUSTACHE = re.compile(r"\{\{\{\s*([^{}]+?)\s*\}\}\}|\{\{\s*([^{}]+?)\s*\}\}")


class _Block(NamedTuple):
    """A template's names, as a tree: the plain names of one level, and the
    blocks in it (helper, its argument, the block's body, its else)."""

    names: tuple[str, ...]
    blocks: tuple[tuple[str, str, "_Block", "_Block"], ...]


def parse_names(source: str) -> _Block:
    """The names ``source`` uses, level by level (see :class:`_Block`)."""
    stack: list[tuple[list, list, tuple | None]] = [([], [], None)]  # names, blocks, (helper, arg, body?)
    for m in _MUSTACHE.finditer(source):
        expr = (m.group(1) or m.group(2)).strip()
        if expr.startswith(("!", ">")):
            continue
        if expr.startswith("#"):
            helper, _, arg = expr[1:].partition(" ")
            stack.append(([], [], (helper, arg.strip(), None)))
        elif expr == "else":
            names, blocks, (helper, arg, _body) = stack.pop()
            stack.append(([], [], (helper, arg, _Block(tuple(dict.fromkeys(names)), tuple(blocks)))))
        elif expr.startswith("/"):
            names, blocks, (helper, arg, body) = stack.pop()
            inner = _Block(tuple(dict.fromkeys(names)), tuple(blocks))
            body, otherwise = (body, inner) if body is not None else (inner, _Block((), ()))
            stack[-1][1].append((helper, arg, body, otherwise))
        else:
            stack[-1][0].append(expr.lstrip("&").strip())
    names, blocks, _ = stack[0]
    return _Block(tuple(dict.fromkeys(names)), tuple(blocks))


_ABSENT = object()


def _lookup(path: str, scopes: list) -> Any:
    """The value at ``path`` (``../`` steps up a scope) or _ABSENT."""
    ups = 0
    while path.startswith("../"):
        path, ups = path[3:], ups + 1
    if ups >= len(scopes):
        return _ABSENT
    value = scopes[-1 - ups]
    if path in ("this", "."):
        return value
    for part in path.removeprefix("this.").split("."):
        # "[0]": Handlebars' segment-literal notation, here an array's item.
        part = part[1:-1] if part.startswith("[") and part.endswith("]") else part
        if isinstance(value, list) and part.isdigit():
            if int(part) >= len(value):
                return _ABSENT
            value = value[int(part)]
            continue
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def missing_names(tree: _Block, scopes: list) -> list[str]:
    """The names of ``tree`` with no value (absent or null) in ``scopes``
    (the data, then each ``{{#each}}`` item inside it): every branch of
    ``{{#if}}`` is checked, and ``{{#each}}``'s body for each item."""
    missing: list[str] = []

    def walk(block: _Block, scopes: list) -> None:
        for name in block.names:
            if not name.startswith("@") and _lookup(name, scopes) in (_ABSENT, None):
                missing.append(name)
        for helper, arg, body, otherwise in block.blocks:
            value = _lookup(arg, scopes)
            if value in (_ABSENT, None):
                missing.append(arg)
                continue
            if helper == "each" and isinstance(value, list):
                for item in value:
                    walk(body, [*scopes, item])
            elif helper == "with":
                walk(body, [*scopes, value])
            else:
                walk(body, scopes)
            walk(otherwise, scopes)

    walk(tree, scopes)
    return list(dict.fromkeys(missing))


class HandlebarsTemplate:
    """A template part that uses blocks, rendered by pybars3 (a port of
    Handlebars.js) with nothing escaped, as SES renders; ``names`` is the
    tree of names it uses, for :func:`missing_names`."""

    slots = (True,)  # never a literal-only part

    def __init__(self, source: str):
        self.source = source
        self.names = parse_names(source)
        self.missing: dict = {}  # the missing names by the data's shape (see _missing_in)

    @functools.cached_property
    def render(self):
        # Compiled on first use, not when the template is stored: pybars3
        # takes seconds over an issue's template (and holds the GIL), which
        # SES's own CreateEmailTemplate does not; a send whose messages are
        # never read compiles nothing.
        import pybars

        nonce = secrets.token_hex(4)  # no value can spell a mark by chance
        source, literals = _folded(_PLAIN.sub(r"{{{\1}}}", self.source), nonce)
        compiled = pybars.Compiler().compile(source)
        if not literals:
            return compiled
        marks = re.compile(f"\ue000{nonce}:([0-9]+)\ue001")

        def render(data):
            return marks.sub(lambda m: literals[int(m.group(1))], str(compiled(data)))

        return render


# Tags of Handlebars (comments, triple and double mustaches), and the text of
# a line of literal text from its first to its last non-blank character.
_TAG = re.compile(r"\{\{!--.*?--\}\}|\{\{\{.*?\}\}\}|\{\{.*?\}\}", re.S)
_LINE_TEXT = re.compile(r"\S(?:[^\n]*\S)?")


def _folded(source: str, nonce: str) -> tuple[str, list[str]]:
    """``source`` with the text of each line of its literal text (what lies
    between tags) replaced by a short mark, and the texts replaced (the
    mark's number indexes them); (the source, []) when it cannot be done
    safely. pybars3's parser takes seconds over an issue's 200 KB template,
    nearly all of it in literal text; the marks keep every tag, blank, line
    break and line that holds text where it was, so blocks, standalone
    lines and ``~`` trim the same, and the render puts the text back."""
    if "\\{{" in source or "\ue000" in source:  # Handlebars' escaped mustache, or a mark's own character
        return source, []
    literals: list[str] = []

    def mark(match: re.Match) -> str:
        literals.append(match.group())
        return f"\ue000{nonce}:{len(literals) - 1}\ue001"

    parts, at = [], 0
    for tag in _TAG.finditer(source):
        parts.append(_LINE_TEXT.sub(mark, source[at:tag.start()]))
        parts.append(tag.group())
        at = tag.end()
    parts.append(_LINE_TEXT.sub(mark, source[at:]))
    return "".join(parts), literals


@functools.lru_cache(maxsize=64)
def compile_handlebars(source: str) -> HandlebarsTemplate:
    return HandlebarsTemplate(source)


def _missing_in(template: HandlebarsTemplate, data: dict, shape: Any) -> tuple[str, ...]:
    """``missing_names`` of ``template`` in ``data``, remembered by the
    data's shape (:func:`_shape`), which alone decides it: a bulk send's
    entries have few shapes, and walking an issue's template for each entry
    would cost this stand-in more CPU than the client it stands in for."""
    found = template.missing.get(shape)
    if found is None:
        found = template.missing[shape] = tuple(missing_names(template.names, [data]))
    return found


def _shape(value: Any) -> Any:
    """What :func:`missing_names` reads of ``value``: the names at each
    level, each list's items, which values are null; not the values. (An
    empty list reads as any other value that is not null: present, and
    with nothing for ``{{#each}}`` to walk.)"""
    # Written for speed (a bulk entry has hundreds of values, most of them
    # flags): a value that is neither an object nor a list with items is
    # read in place, without a call.
    kind = type(value)
    if kind is dict:
        return frozenset([(key, _shape(item) if type(item) is dict or (type(item) is list and item)
                           else item is None) for key, item in value.items()])
    if kind is list and value:
        return tuple([_shape(item) if type(item) is dict or (type(item) is list and item) else item is None
                      for item in value])
    return value is None


class _HandlebarsRendered:
    """A part rendered by pybars3 only when read."""

    __slots__ = ("template", "data")

    def __init__(self, template: HandlebarsTemplate, data: dict):
        self.template = template
        self.data = data

    def render(self) -> str:
        data = self.data.value() if type(self.data) is _Frozen else self.data
        return str(self.template.render(data))


class _Frozen:
    """An accepted message's template data, kept as its JSON text and read
    back on demand: a long send keeps every message it accepted, and their
    data as dicts and lists (an entry's flags are arrays) would be millions
    of objects for the garbage collector to walk, CPU this stand-in would
    take from the client on the same cores."""

    __slots__ = ("default", "text")

    def __init__(self, default: dict, text: str | None):
        # The entry's own data as it came (None: the default alone), over
        # the call's default: the merge is made again when read, not
        # encoded again for every message.
        self.default = default
        self.text = text

    def value(self) -> dict:
        return {**self.default, **json.loads(self.text)} if self.text is not None else dict(self.default)


class _Parts(NamedTuple):
    subject: CompiledTemplate | HandlebarsTemplate | None
    text: CompiledTemplate | HandlebarsTemplate | None
    html: CompiledTemplate | HandlebarsTemplate | None

    @classmethod
    def of(cls, content: dict) -> "_Parts":
        # A template with blocks anywhere is Handlebars through and through.
        handlebars = any(_BLOCKS.search(content.get(key) or "") for key in ("Subject", "Text", "Html"))

        def part(key):
            src = content.get(key)
            if src is None:
                return None
            return compile_handlebars(src) if handlebars else compile_template(src)

        return cls(part("Subject"), part("Text"), part("Html"))

    def render_lazily(self, data: dict):
        """(subject, text, html, missing); parts with placeholders stay lazy.
        ``missing`` is every name used with no value in ``data``."""
        out: list[Any] = []
        missing: list[str] = []
        shape = None  # the data's (see _shape), made once
        for compiled in self:
            if compiled is None:
                out.append(None)
            elif isinstance(compiled, HandlebarsTemplate):
                if shape is None:
                    shape = _shape(data)
                missing.extend(m for m in _missing_in(compiled, data, shape) if m not in missing)
                out.append(_HandlebarsRendered(compiled, data))
            elif not compiled.slots:
                out.append(compiled.literals[0])
            else:
                values, miss = compiled.resolve(data)
                missing.extend(m for m in miss if m not in missing)
                out.append(_Rendered(compiled, values))
        return out[0], out[1], out[2], tuple(missing)


# --------------------------------------------------------------------------
# Records


@dataclasses.dataclass
class SentMessage:
    """One message the stand-in accepted.

    ``headers`` are the custom headers sent (bulk default headers merged
    with ``ReplacementHeaders``), or every header of the MIME message for
    Raw. ``to`` is as sent in ``Destination``; for Raw without a
    Destination, the addresses of the MIME To header. For templated
    messages ``subject``, ``text`` and ``html`` are rendered each time they
    are read; ``template_data`` is the merged data they were rendered with.
    """

    message_id: str
    operation: str  # "SendEmail" or "SendBulkEmail"
    from_address: str | None
    to: list[str]
    subject: str | None
    text: str | None
    html: str | None
    headers: list[tuple[str, str]]
    raw: bytes | None
    configuration_set: str | None
    accepted_at: float  # time.time()
    content_kind: str = "Raw"  # "Raw" or "Template"
    template_name: str | None = None
    template_data: dict | None = None

    def header(self, name: str) -> str | None:
        """The value of the first header called ``name`` (any case)."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


def _lazy_field(name: str) -> property:
    key = "_lazy_" + name

    def get(self):
        value = self.__dict__[key]
        if type(value) is _Frozen:
            return value.value()
        return value.render() if type(value) in (_Rendered, _HandlebarsRendered) else value

    def set(self, value):
        self.__dict__[key] = value

    return property(get, set)


for _name in ("subject", "text", "html", "template_data"):
    setattr(SentMessage, _name, _lazy_field(_name))


class RequestRecord(NamedTuple):
    """One request: operation, recipients asked for, body bytes, status.

    ``status`` is the HTTP status answered, or 0 when the connection was
    dropped with no answer.
    """

    operation: str
    n_recipients: int
    body_bytes: int
    status: int


@dataclasses.dataclass
class _Fault:
    kind: str  # "fail", "throttle", "drop", "hold"
    remaining: int
    operations: frozenset[str] | None
    status: int = 500
    error_type: str = "InternalFailure"
    message: str = ""
    once_sent: int = 0  # applies only once the server has accepted this many messages

    def matches(self, operation: str, sent: int = 0) -> bool:
        return (self.operations is None or operation in self.operations) and sent >= self.once_sent


class _Template(NamedTuple):
    name: str
    content: dict
    parts: _Parts


# --------------------------------------------------------------------------
# The server


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SesV2StandIn"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self.server.standin._handle(self)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            return  # a client that went away (a killed sender): nothing to report
        super().handle_error(request, client_address)

    def __init__(self, address, standin):
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        with self.connections_lock:
            open_now = list(self.connections)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Drop(Exception):
    """Close the connection without answering."""


def _not_implemented(what: str) -> ApiError:
    return ApiError("NotImplemented", f"SesV2StandIn does not implement {what}.", 501)


class SesV2StandIn:
    """An SES v2 endpoint on 127.0.0.1 for tests (see the module docstring).

    ``max_send_rate``, ``max_24_hour_send`` and ``sent_last_24_hours`` are
    what GetAccount reports and what sends are checked against.
    ``throttle_style`` is how a bulk call beyond the rate is answered:
    ``"entries"`` (per-entry ``ACCOUNT_THROTTLED``) or ``"call"`` (HTTP 429).
    ``clock`` gives the seconds the rate's token bucket counts with.
    ``render_rate`` is how many TestRenderEmailTemplate calls a second are
    answered (SES: one). ``on_event(record)`` is called with each event
    published (a Rendering Failure), after it is added to ``events``.
    """

    def __init__(
        self,
        max_send_rate: float = 14,
        max_24_hour_send: float = 50000,
        sent_last_24_hours: float = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        throttle_style: str = "entries",
        clock: Callable[[], float] = time.monotonic,
        production_access: bool = True,
        sending_enabled: bool = True,
        render_rate: float = math.inf,
        on_event: Callable[[dict], None] | None = None,
    ):
        if throttle_style not in ("entries", "call"):
            raise ValueError("throttle_style must be 'entries' or 'call'")
        self.host = host
        self.port = port
        self.throttle_style = throttle_style
        self.clock = clock
        self.max_send_rate = float(max_send_rate)
        self.max_24_hour_send = float(max_24_hour_send)
        self._initial_sent_24h = float(sent_last_24_hours)
        self._sent_24h = float(sent_last_24_hours)
        self._router = _Router(service_model())
        self._lock = threading.RLock()
        self._released = threading.Condition(self._lock)  # held requests wait on it
        self._release_round = 0  # counts release() calls
        self._held = 0
        self._held_recipients = 0
        self._busy = 0
        self._templates: dict[str, _Template] = {}
        self._sent: list[SentMessage] = []
        self._events: list[dict] = []
        self.on_event = on_event
        self.render_rate = float(render_rate)
        self._rendered_at: float | None = None  # the last TestRenderEmailTemplate answered
        self._requests: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._rejections: list[Callable[[str], bool]] = []
        self._account_error: tuple[str, str] | None = None
        self._production_access = bool(production_access)
        self._sending_enabled = bool(sending_enabled)
        self._identities: dict[str, dict] = {}  # lower-case name -> GetEmailIdentity's answer
        self._configuration_sets: dict[str, dict] = {}  # name -> {"sending_enabled", "destinations"}
        self._bytes_received = 0
        self._throttled = 0
        self._tokens = self._capacity()
        self._refilled_at = clock()
        self._ids = itertools.count(1)
        self._id_prefix = "0100" + os.urandom(6).hex()
        self._local = threading.local()  # per request: recipients for the log
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "SesV2StandIn":
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sesv2-standin-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: held requests are let go, open connections closed."""
        server, self._server = self._server, None
        if server is None:
            return
        self.release()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SesV2StandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return f"http://{self.host}:{self.port}"

    def client(self, total_max_attempts: int = 1, **kwargs):
        """A boto3 ``sesv2`` client for this stand-in, with fake credentials.

        By default it makes exactly one attempt per call (no retries).
        Note that botocore's legacy ``retries={"max_attempts": 1}`` means
        one *retry*, i.e. two attempts. Other keyword arguments go to
        ``boto3.client`` (e.g. ``config=``).
        """
        import boto3
        import botocore.config

        options = {
            "endpoint_url": self.endpoint_url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "config": botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": total_max_attempts},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=32,
            ),
        }
        options.update(kwargs)
        return boto3.client("sesv2", **options)

    # -- records -----------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._lock:
            return list(self._sent)

    @property
    def events(self) -> list[dict]:
        """A snapshot of the events published (Rendering Failures), oldest
        first, each as SES writes it to SNS or SQS."""
        with self._lock:
            return list(self._events)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of (operation, n_recipients, body_bytes, status)."""
        with self._lock:
            return list(self._requests)

    @property
    def bytes_received(self) -> int:
        """Total bytes of request bodies received."""
        with self._lock:
            return self._bytes_received

    @property
    def throttled(self) -> int:
        """Throttle events: 429 answers plus ACCOUNT_THROTTLED entries."""
        with self._lock:
            return self._throttled

    @property
    def sent_last_24_hours(self) -> float:
        with self._lock:
            return self._sent_24h

    @property
    def templates(self) -> dict[str, dict]:
        """A snapshot: template name -> {"Subject", "Text", "Html"}."""
        with self._lock:
            return {name: dict(t.content) for name, t in self._templates.items()}

    @property
    def held(self) -> int:
        """Requests waiting for ``release()`` right now (see ``hold_next``)."""
        with self._lock:
            return self._held

    @property
    def held_recipients(self) -> int:
        """Recipients of the requests held right now."""
        with self._lock:
            return self._held_recipients

    @property
    def rate_room(self) -> float:
        """How many messages the rate limit lets through at once now (its
        bucket, refilled for the time gone by)."""
        with self._lock:
            self._refill()
            return self._tokens

    @property
    def busy(self) -> int:
        """Requests being handled right now, held ones included."""
        with self._lock:
            return self._busy

    def count_by_recipient(self) -> collections.Counter:
        """How many accepted messages each address got."""
        counts: collections.Counter = collections.Counter()
        for message in self.sent:
            counts.update(message.to)
        return counts

    def reset(self, templates: bool = False) -> None:
        """Forget messages, requests, counters and faults; refill the bucket.

        ``SentLast24Hours`` goes back to the constructor's value. Templates
        are kept unless ``templates=True``.
        """
        with self._lock:
            self._sent.clear()
            self._events.clear()
            self._rendered_at = None
            self._requests.clear()
            self._faults.clear()
            self._rejections.clear()
            self._account_error = None
            self._bytes_received = 0
            self._throttled = 0
            self._sent_24h = self._initial_sent_24h
            self._tokens = self._capacity()
            self._refilled_at = self.clock()
            if templates:
                self._templates.clear()

    def add_template(
        self,
        name: str,
        subject: str | None = None,
        text: str | None = None,
        html: str | None = None,
    ) -> None:
        """Create or replace a template directly (no request)."""
        content = {
            k: v for k, v in (("Subject", subject), ("Text", text), ("Html", html)) if v is not None
        }
        with self._lock:
            self._templates[name] = _Template(name, content, _Parts.of(content))

    def set_account(self, production_access: bool | None = None, sending_enabled: bool | None = None) -> None:
        """Change what GetAccount says about the account: out of the sandbox
        (``ProductionAccessEnabled``) and sending enabled (with sending
        disabled, every send is answered ``SendingPausedException``)."""
        with self._lock:
            if production_access is not None:
                self._production_access = bool(production_access)
            if sending_enabled is not None:
                self._sending_enabled = bool(sending_enabled)

    def add_identity(
        self,
        name: str,
        *,
        verified: bool = True,
        dkim: str | None = None,
        dkim_signing: bool = True,
        mail_from: str | None = None,
        mail_from_status: str = "SUCCESS",
        behavior_on_mx_failure: str = "USE_DEFAULT_VALUE",
    ) -> None:
        """Create or replace an identity directly (no request): a domain, or
        an email address when ``name`` has an ``@``. ``dkim`` is its DKIM
        status (``SUCCESS`` for a domain and ``NOT_STARTED`` for an address
        unless given), ``mail_from`` its custom MAIL FROM domain (None: SES's
        own) with ``mail_from_status`` and ``behavior_on_mx_failure``."""
        dkim = dkim or ("NOT_STARTED" if "@" in name else "SUCCESS")
        _check_enum("DkimStatus", dkim)
        _check_enum("MailFromDomainStatus", mail_from_status)
        _check_enum("BehaviorOnMxFailure", behavior_on_mx_failure)
        tokens = [] if dkim == "NOT_STARTED" else [f"{name.partition('@')[2] or name}-dkim{i}" for i in (1, 2, 3)]
        answer = {
            "IdentityType": "EMAIL_ADDRESS" if "@" in name else "DOMAIN",
            "FeedbackForwardingStatus": True,
            "VerifiedForSendingStatus": bool(verified),
            "VerificationStatus": "SUCCESS" if verified else "PENDING",
            "DkimAttributes": {
                "SigningEnabled": bool(dkim_signing),
                "Status": dkim,
                "Tokens": tokens,
                "SigningAttributesOrigin": "AWS_SES",
                "CurrentSigningKeyLength": "RSA_2048_BIT",
                "NextSigningKeyLength": "RSA_2048_BIT",
            },
            "MailFromAttributes": {
                "MailFromDomain": mail_from or "",
                "MailFromDomainStatus": mail_from_status if mail_from else "FAILED",
                "BehaviorOnMxFailure": behavior_on_mx_failure,
            },
            "Policies": {},
            "Tags": [],
        }
        with self._lock:
            self._identities[name.lower()] = answer

    def remove_identity(self, name: str) -> None:
        """Forget an identity (GetEmailIdentity then answers NotFoundException)."""
        with self._lock:
            self._identities.pop(name.lower(), None)

    def add_configuration_set(self, name: str, *, sending_enabled: bool = True) -> None:
        """Create or replace a configuration set directly (no request), with
        no event destinations."""
        with self._lock:
            self._configuration_sets[name] = {"sending_enabled": bool(sending_enabled), "destinations": []}

    def add_event_destination(
        self,
        configuration_set: str,
        name: str,
        event_types: Iterable[str],
        *,
        sns_topic_arn: str | None = None,
        enabled: bool = True,
    ) -> None:
        """Add an event destination to ``configuration_set`` (which must
        exist): the ``event_types`` it publishes (``BOUNCE``, ``COMPLAINT``,
        ...) to the SNS topic ``sns_topic_arn`` (None: a CloudWatch
        destination)."""
        event_types = list(event_types)
        for event_type in event_types:
            _check_enum("EventType", event_type)
        destination: dict[str, Any] = {"Name": name, "Enabled": bool(enabled), "MatchingEventTypes": event_types}
        if sns_topic_arn:
            destination["SnsDestination"] = {"TopicArn": sns_topic_arn}
        else:
            destination["CloudWatchDestination"] = {"DimensionConfigurations": [{
                "DimensionName": "ses:configuration-set", "DimensionValueSource": "MESSAGE_TAG",
                "DefaultDimensionValue": configuration_set,
            }]}
        with self._lock:
            self._configuration_sets[configuration_set]["destinations"].append(destination)

    def remove_configuration_set(self, name: str) -> None:
        """Forget a configuration set and its event destinations."""
        with self._lock:
            self._configuration_sets.pop(name, None)

    def set_quota(
        self,
        max_send_rate: float | None = None,
        max_24_hour_send: float | None = None,
        sent_last_24_hours: float | None = None,
    ) -> None:
        """Change the account's quota while running (refills the bucket)."""
        with self._lock:
            if max_send_rate is not None:
                self.max_send_rate = float(max_send_rate)
            if max_24_hour_send is not None:
                self.max_24_hour_send = float(max_24_hour_send)
            if sent_last_24_hours is not None:
                self._sent_24h = float(sent_last_24_hours)
            self._tokens = self._capacity()
            self._refilled_at = self.clock()

    # -- faults ------------------------------------------------------------

    @staticmethod
    def _operations(operation) -> frozenset[str] | None:
        if operation is None:
            return None
        if isinstance(operation, str):
            return frozenset([operation])
        return frozenset(operation)

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            return
        with self._lock:
            self._faults.append(fault)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        error_type: str = "InternalFailure",
        message: str = "An internal error occurred.",
        operation: str | Collection[str] | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with this error."""
        self._add_fault(
            _Fault("fail", n, self._operations(operation), status, error_type, message)
        )

    def throttle_next(
        self, n: int = 1, operation: str | Collection[str] | None = None
    ) -> None:
        """Answer the next ``n`` matching requests 429 TooManyRequestsException."""
        self._add_fault(
            _Fault("throttle", n, self._operations(operation), 429,
                   "TooManyRequestsException", RATE_MESSAGE)
        )

    def drop_next(self, n: int = 1, operation: str | Collection[str] | None = None) -> None:
        """Handle the next ``n`` matching requests, then close the connection
        with no answer: what they sent is accepted and recorded, and the
        client cannot know."""
        self._add_fault(_Fault("drop", n, self._operations(operation)))

    def hold_next(self, n: int, operation: str | Collection[str] | None = None, once_sent: int = 0) -> None:
        """Make each of the next ``n`` matching requests wait, before it is
        handled, until ``release()``; with ``once_sent``, only the requests
        that arrive once that many messages were accepted (the server
        decides as each request arrives, so a busy test cannot let a client
        run past the point)."""
        self._add_fault(_Fault("hold", n, self._operations(operation), once_sent=once_sent))

    def release(self) -> None:
        """Let every request held now go on (holds still queued stay)."""
        with self._released:
            self._release_round += 1
            self._released.notify_all()

    def reject_addresses(self, addresses: Callable[[str], bool] | Iterable[str] | None) -> None:
        """Reject every message to these recipients until cleared.

        Give a set of addresses (matched case-insensitively, with or
        without a display name) or a function of the address as sent. Bulk
        entries get ``MESSAGE_REJECTED``, a single send ``MessageRejected``.
        ``None`` clears every rejection.
        """
        if addresses is None:
            with self._lock:
                self._rejections.clear()
            return
        if callable(addresses):
            test = addresses
        else:
            wanted = frozenset(a.lower() for a in addresses)

            def test(address: str) -> bool:
                lower = address.lower()
                return lower in wanted or (
                    "<" in lower and email.utils.parseaddr(lower)[1] in wanted
                )

        with self._lock:
            self._rejections.append(test)

    def account_error(self, error_type: str | None, message: str | None = None) -> None:
        """Answer every send with this error (e.g. "SendingPausedException")
        until cleared with ``account_error(None)``. GetAccount then reports
        ``SendingEnabled: false``."""
        with self._lock:
            if error_type is None:
                self._account_error = None
            else:
                self._account_error = (
                    error_type,
                    message or ACCOUNT_ERROR_MESSAGES.get(error_type, error_type),
                )

    def clear_faults(self) -> None:
        """Forget queued faults, rejections and the account error."""
        with self._lock:
            self._faults.clear()
            self._rejections.clear()
            self._account_error = None

    def _take_fault(self, kind: str, operation: str) -> _Fault | None:
        kinds = ("fail", "throttle", "drop") if kind == "terminal" else (kind,)
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(operation, len(self._sent)):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _wait_for_release(self) -> None:
        with self._released:
            round_held = self._release_round
            self._held += 1
            self._held_recipients += self._local.n_recipients
            try:
                while self._release_round == round_held:
                    self._released.wait()
            finally:
                self._held -= 1
                self._held_recipients -= self._local.n_recipients

    # -- rate and quota (call with the lock held) --------------------------

    def _capacity(self) -> float:
        return max(1.0, self.max_send_rate)

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(
            self._capacity(),
            self._tokens + (now - self._refilled_at) * self.max_send_rate,
        )
        self._refilled_at = now

    def _rate_fits(self, n: int) -> bool:
        if math.isinf(self.max_send_rate):
            return True
        return self._tokens >= min(n, self._capacity())

    def _quota_fits(self, n: int) -> bool:
        if self.max_24_hour_send < 0 or math.isinf(self.max_24_hour_send):
            return True
        return self._sent_24h + n <= self.max_24_hour_send

    def _consume(self, n: int) -> None:
        if not math.isinf(self.max_send_rate):
            self._tokens -= n
        self._sent_24h += n

    def _rejected(self, addresses: Iterable[str]) -> str | None:
        """The first of ``addresses`` a rejection matches, or None."""
        for test in self._rejections:
            for address in addresses:
                if test(address):
                    return address
        return None

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids):08d}-{os.urandom(4).hex()}-000000"

    # -- HTTP --------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        with self._lock:
            self._busy += 1
        try:
            self._handle_request(h)
        finally:
            with self._lock:
                self._busy -= 1

    def _handle_request(self, h: _Handler) -> None:
        body = b""
        length = h.headers.get("Content-Length")
        if length:
            body = h.rfile.read(int(length))
        path, _, query = h.path.partition("?")
        found = self._router.match(h.command, path)
        operation = found[0].name if found else "Unknown"
        self._local.n_recipients = None
        error_type = None
        try:
            status, payload = 200, self._answer(h, found, operation, path, query, body)
        except _Drop:
            status, payload = 0, b""
        except ApiError as e:
            status, error_type = e.status, e.code
            payload = json.dumps({"message": e.message}, separators=(",", ":")).encode()
        except Exception as e:  # a bug in the stand-in: say so, as a 500
            status, error_type = 500, "InternalFailure"
            payload = json.dumps({"message": f"SesV2StandIn error: {e!r}"}).encode()
        n_recipients = self._local.n_recipients or 0
        # Log before answering, so a client that got its answer sees the log.
        with self._lock:
            self._bytes_received += len(body)
            self._requests.append(RequestRecord(operation, n_recipients, len(body), status))
        if status == 0:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            self._write(h, status, payload, error_type)

    def _answer(self, h, found, operation: str, path: str, query: str, body: bytes) -> bytes:
        """The JSON answer's bytes; raises ApiError or _Drop instead."""
        try:
            decoded = json.loads(body) if body else {}
        except ValueError:
            decoded = None
        self._local.n_recipients = _count_recipients(operation, decoded)
        if self._take_fault("hold", operation) is not None:
            self._wait_for_release()
        fault = self._take_fault("terminal", operation)
        if fault is not None:
            if fault.kind == "throttle":
                with self._lock:
                    self._throttled += 1
            if fault.kind in ("fail", "throttle"):
                raise ApiError(fault.error_type, fault.message, fault.status)
        if found is None:
            raise ApiError(
                "UnknownOperationException", f"No SES v2 operation is {h.command} {path}.", 404
            )
        route, path_values = found
        if decoded is None:
            raise _bad("The request body is not valid JSON.")
        params = parse_request(route, path_values, query, h.headers, decoded)
        handler = getattr(self, "_op_" + route.name, None)
        if handler is None:
            raise _not_implemented(route.name)
        result = handler(params)
        if fault is not None and fault.kind == "drop":
            raise _Drop()
        return json.dumps(result, separators=(",", ":")).encode()

    @staticmethod
    def _write(h: _Handler, status: int, payload: bytes, error_type: str | None = None):
        reason = h.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Date: {h.date_time_string()}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n"
            f"x-amzn-RequestId: {uuid.uuid4()}\r\n"
        )
        if error_type:
            head += f"x-amzn-ErrorType: {error_type}\r\n"
        if h.close_connection:
            head += "Connection: close\r\n"
        try:
            h.wfile.write(head.encode("latin-1") + b"\r\n" + payload)
        except OSError:
            h.close_connection = True

    # -- operations --------------------------------------------------------

    def _op_GetAccount(self, params: dict) -> dict:
        with self._lock:
            return {
                "SendQuota": {
                    "Max24HourSend": self.max_24_hour_send,
                    "MaxSendRate": self.max_send_rate,
                    "SentLast24Hours": self._sent_24h,
                },
                "SendingEnabled": self._sending_enabled and self._account_error is None,
                "ProductionAccessEnabled": self._production_access,
                "DedicatedIpAutoWarmupEnabled": False,
                "EnforcementStatus": "HEALTHY",
            }

    def _op_CreateEmailTemplate(self, params: dict) -> dict:
        name = params["TemplateName"]
        content = params["TemplateContent"]
        parts = _Parts.of(content)
        with self._lock:
            if name in self._templates:
                raise ApiError("AlreadyExistsException", f"Template {name} already exists.")
            self._templates[name] = _Template(name, content, parts)
        return {}

    def _op_UpdateEmailTemplate(self, params: dict) -> dict:
        name = params["TemplateName"]
        content = params["TemplateContent"]
        parts = _Parts.of(content)
        with self._lock:
            if name not in self._templates:
                raise ApiError("NotFoundException", f"Template {name} does not exist.")
            self._templates[name] = _Template(name, content, parts)
        return {}

    def _op_DeleteEmailTemplate(self, params: dict) -> dict:
        name = params["TemplateName"]
        with self._lock:
            if self._templates.pop(name, None) is None:
                raise ApiError("NotFoundException", f"Template {name} does not exist.")
        return {}

    def _op_TestRenderEmailTemplate(self, params: dict) -> dict:
        name = params["TemplateName"]
        data = _template_data(params["TemplateData"])
        with self._lock:
            now = self.clock()
            if self._rendered_at is not None and now - self._rendered_at < 1 / self.render_rate:
                raise ApiError("TooManyRequestsException", "Too many requests.")
            self._rendered_at = now
            template = self._templates.get(name)
        if template is None:
            raise ApiError("NotFoundException", f"Template {name} does not exist.")
        if data is None:
            raise _bad("TemplateData must be a JSON object.")
        subject, text, html, missing = template.parts.render_lazily(data)
        if missing:
            raise _bad(_rendering_error(missing))
        mime = email.message.EmailMessage(policy=email.policy.SMTP)
        mime["Subject"] = _value(subject) or ""
        mime.set_content(_value(text) or "", subtype="plain", charset="utf-8")
        if html is not None:
            mime.add_alternative(_value(html), subtype="html", charset="utf-8")
        return {"RenderedTemplate": mime.as_string()}

    def _publish(self, events: list[dict]) -> None:
        """Record ``events`` and hand each to ``on_event``."""
        with self._lock:
            self._events.extend(events)
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    def _op_GetEmailIdentity(self, params: dict) -> dict:
        name = params["EmailIdentity"]
        with self._lock:
            answer = self._identities.get(name.lower())
        if answer is None:
            raise ApiError("NotFoundException", f"Email identity {name} does not exist.")
        return json.loads(json.dumps(answer))  # a copy

    def _configuration_set(self, name: str) -> dict:
        found = self._configuration_sets.get(name)
        if found is None:
            raise ApiError("NotFoundException", f"Configuration set <{name}> does not exist.")
        return found

    def _op_GetConfigurationSet(self, params: dict) -> dict:
        name = params["ConfigurationSetName"]
        with self._lock:
            found = self._configuration_set(name)
            return {
                "ConfigurationSetName": name,
                "SendingOptions": {"SendingEnabled": found["sending_enabled"]},
                "ReputationOptions": {"ReputationMetricsEnabled": False},
                "DeliveryOptions": {"TlsPolicy": "OPTIONAL"},
                "Tags": [],
            }

    def _op_GetConfigurationSetEventDestinations(self, params: dict) -> dict:
        with self._lock:
            found = self._configuration_set(params["ConfigurationSetName"])
            return {"EventDestinations": json.loads(json.dumps(found["destinations"]))}

    def _check_sendable(self) -> None:
        with self._lock:
            error = self._account_error
            if error is None and not self._sending_enabled:
                error = ("SendingPausedException", ACCOUNT_ERROR_MESSAGES["SendingPausedException"])
        if error is not None:
            raise ApiError(error[0], error[1])

    def _op_SendEmail(self, params: dict) -> dict:
        content = params["Content"]
        kinds = [k for k in ("Simple", "Raw", "Template") if k in content]
        if len(kinds) != 1:
            raise _bad("Content must have exactly one of Simple, Raw or Template.")
        if kinds[0] != "Raw":
            raise _not_implemented(f"SendEmail with {kinds[0]} content")
        to = _to_addresses(params.get("Destination", {}))
        sender = params.get("FromEmailAddress")
        self._check_sendable()

        raw = content["Raw"]["Data"]
        parsed = _parse_mime(raw)
        if not to:
            to = parsed["to"]
        sender = sender or parsed["from"]
        self._local.n_recipients = len(to)
        _check_addresses(sender, to)
        n = len(to)
        with self._lock:
            rejected = self._rejected(to) if self._rejections else None
            if rejected:
                raise ApiError("MessageRejected", REJECT_ERROR.replace("{address}", rejected))
            duplicate = _duplicate_header(parsed["headers"])
            if duplicate:
                raise ApiError("MessageRejected", f"Duplicate header '{duplicate}'.")
            if not self._quota_fits(n):
                raise ApiError("LimitExceededException", DAILY_MESSAGE)
            self._refill()
            if not self._rate_fits(n):
                self._throttled += 1
                raise ApiError("TooManyRequestsException", RATE_MESSAGE)
            self._consume(n)
            message = SentMessage(
                message_id=self._new_id(),
                operation="SendEmail",
                from_address=sender,
                to=to,
                subject=parsed["subject"],
                text=parsed["text"],
                html=parsed["html"],
                headers=parsed["headers"],
                raw=raw,
                configuration_set=params.get("ConfigurationSetName"),
                accepted_at=time.time(),
            )
            self._sent.append(message)
        return {"MessageId": message.message_id}

    def _op_SendBulkEmail(self, params: dict) -> dict:
        entries = params["BulkEmailEntries"]
        if not entries:
            raise _bad("BulkEmailEntries must not be empty.")
        if len(entries) > MAX_BULK_ENTRIES:
            raise _bad(
                f"BulkEmailEntries has {len(entries)} entries; "
                f"at most {MAX_BULK_ENTRIES} are allowed."
            )
        spec = params["DefaultContent"].get("Template")
        if spec is None:
            raise _bad("DefaultContent must have a Template.")
        template_name = spec.get("TemplateName")
        if template_name is None:
            raise _not_implemented("SendBulkEmail with an inline template or a template ARN")
        sender = params.get("FromEmailAddress")
        default_data = _template_data(spec.get("TemplateData"))
        if default_data is None:
            raise _bad("TemplateData must be a JSON object.")
        default_headers = _header_pairs(spec.get("Headers", ()))
        config_set = params.get("ConfigurationSetName")

        # Per-entry work that needs no lock: recipients, data, headers.
        prepared = []
        for entry in entries:
            to = _to_addresses(entry["Destination"])
            _check_addresses(sender, to)
            replacement = (
                entry.get("ReplacementEmailContent", {})
                .get("ReplacementTemplate", {})
                .get("ReplacementTemplateData")
            )
            if replacement is None:
                data = default_data
            else:
                extra = _template_data(replacement)
                data = None if extra is None else {**default_data, **extra}
            headers = _merge_headers(default_headers, entry.get("ReplacementHeaders"))
            prepared.append((to, data, headers, replacement))

        self._check_sendable()
        with self._lock:
            template = self._templates.get(template_name)
        results: list[dict] = []
        accepted: list[tuple[int, str]] = []  # (entry index, message id)
        with self._lock:
            self._refill()
            if template is None:
                error = f"Template {template_name} does not exist."
                results = [
                    {"Status": "TEMPLATE_NOT_FOUND", "Error": error} for _ in prepared
                ]
                return {"BulkEmailEntryResults": results}
            statuses: list[tuple[str, str] | None] = []
            for to, data, headers, _replacement in prepared:
                status = None
                if data is None:
                    status = ("INVALID_PARAMETER", "ReplacementTemplateData must be a JSON object.")
                elif self._rejections and (address := self._rejected(to)):
                    status = ("MESSAGE_REJECTED", REJECT_ERROR.replace("{address}", address))
                elif duplicate := _duplicate_header(headers):
                    status = ("MESSAGE_REJECTED", f"Duplicate header '{duplicate}'.")
                statuses.append(status)
            if self.throttle_style == "call":
                wanted = sum(len(p[0]) for p, s in zip(prepared, statuses) if s is None)
                if wanted and not self._rate_fits(wanted):
                    self._throttled += 1
                    raise ApiError("TooManyRequestsException", RATE_MESSAGE)
            now = time.time()
            for i, (p, status) in enumerate(zip(prepared, statuses)):
                n = len(p[0])
                if status is None:
                    if not self._quota_fits(n):
                        status = ("ACCOUNT_DAILY_QUOTA_EXCEEDED", DAILY_MESSAGE)
                    elif self.throttle_style == "entries" and not self._rate_fits(n):
                        status = ("ACCOUNT_THROTTLED", RATE_MESSAGE)
                        self._throttled += 1
                if status is not None:
                    results.append({"Status": status[0], "Error": status[1]})
                    continue
                self._consume(n)
                message_id = self._new_id()
                accepted.append((i, message_id))
                results.append({"Status": "SUCCESS", "MessageId": message_id})

        messages = []
        failures = []
        for i, message_id in accepted:
            to, data, headers, replacement = prepared[i]
            subject, text, html, missing = template.parts.render_lazily(data)
            if missing:  # accepted, then dropped, as SES does
                failures.append(_rendering_failure(message_id, sender, to, template_name, missing, now, config_set))
                continue
            data = _Frozen(default_data, replacement)
            subject, text, html = (_HandlebarsRendered(part.template, data) if type(part) is _HandlebarsRendered
                                   else part for part in (subject, text, html))
            messages.append(
                SentMessage(
                    message_id=message_id,
                    operation="SendBulkEmail",
                    from_address=sender,
                    to=to,
                    subject=subject,
                    text=text,
                    html=html,
                    headers=headers,
                    raw=None,
                    configuration_set=config_set,
                    accepted_at=now,
                    content_kind="Template",
                    template_name=template_name,
                    template_data=data,
                )
            )
        if messages:
            with self._lock:
                self._sent.extend(messages)
        if failures:
            self._publish(failures)
        return {"BulkEmailEntryResults": results}


# --------------------------------------------------------------------------
# Helpers


def _value(part) -> str | None:
    """A part as rendered (see render_lazily)."""
    return part.render() if type(part) in (_Rendered, _HandlebarsRendered) else part


def _rendering_error(missing: list[str]) -> str:
    """SES's words for a rendering failure (the first name missing)."""
    return f"Attribute '{missing[0]}' is not present in the rendering data."


def _rendering_failure(message_id: str, sender: str | None, to: list[str], template_name: str,
                       missing, when: float, config_set: str | None) -> dict:
    """A Rendering Failure event as SES publishes it (its "Rendering Failure
    record" example: ``mail`` without headers, ``failure`` beside it)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + ".000Z"
    return {
        "eventType": "Rendering Failure",
        "mail": {
            "timestamp": stamp,
            "source": sender,
            "sendingAccountId": "123456789012",
            "messageId": message_id,
            "destination": [email.utils.parseaddr(address)[1] for address in to],
            "headersTruncated": False,
            "tags": {"ses:configuration-set": [config_set]} if config_set else {},
        },
        "failure": {"templateName": template_name, "errorMessage": _rendering_error(list(missing))},
    }


def _check_enum(shape_name: str, value: str) -> None:
    """Raise ValueError unless ``value`` is one of the model's ``shape_name`` values."""
    allowed = service_model().shape_for(shape_name).metadata.get("enum", [])
    if value not in allowed:
        raise ValueError(f"{value!r} is not a {shape_name}: one of {', '.join(allowed)}")


def _to_addresses(destination: dict) -> list[str]:
    """A Destination's ToAddresses; Cc and Bcc are not modelled (501)."""
    if destination.get("CcAddresses") or destination.get("BccAddresses"):
        raise _not_implemented("Cc or Bcc recipients")
    return list(destination.get("ToAddresses", ()))


def _count_recipients(operation: str, body: Any) -> int:
    """Recipients a request asks for, from its JSON (tolerant of anything)."""
    if not isinstance(body, dict):
        return 0
    try:
        if operation == "SendEmail":
            return len((body.get("Destination") or {}).get("ToAddresses") or ())
        if operation == "SendBulkEmail":
            return sum(
                len((entry.get("Destination") or {}).get("ToAddresses") or ())
                for entry in body.get("BulkEmailEntries") or ()
            )
    except (AttributeError, TypeError):
        pass
    return 0


def _template_data(text: str | None) -> dict | None:
    """Template data: a JSON object in a string (absent -> {}), else None.
    Values may be any JSON (lists and objects for Handlebars blocks)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _header_pairs(headers) -> list[tuple[str, str]]:
    return [(h["Name"], h["Value"]) for h in headers]


def _merge_headers(default: list[tuple[str, str]], replacement) -> list[tuple[str, str]]:
    if not replacement:
        return default
    extra = _header_pairs(replacement)
    names = {name.lower() for name, _ in extra}
    return [h for h in default if h[0].lower() not in names] + extra


def _duplicate_header(headers: list[tuple[str, str]]) -> str | None:
    if len(headers) < 2:
        return None
    seen = set()
    for name, _ in headers:
        lower = name.lower()
        if lower in seen and lower in UNIQUE_HEADERS:
            return name
        seen.add(lower)
    return None


def _check_addresses(sender: str | None, recipients: list[str]) -> None:
    if not sender:
        raise _bad("Missing FromEmailAddress (or a From header for Raw).")
    if "@" not in sender:
        raise _bad(f"Illegal address: {sender}")
    if not recipients:
        raise _bad("The message has no recipients.")
    if len(recipients) > MAX_RECIPIENTS:
        raise _bad(f"Recipient count exceeds {MAX_RECIPIENTS}.")
    for address in recipients:
        if "@" not in address:
            raise _bad(f"Illegal address: {address}")


_MIME_PARSER = email.parser.BytesParser(policy=email.policy.default)


def _parse_mime(data: bytes) -> dict:
    try:
        message = _MIME_PARSER.parsebytes(data)
    except Exception as e:  # the email package is lenient; be safe
        raise ApiError("MessageRejected", f"Could not parse the raw message: {e}") from e
    if message.get_all("Cc") or message.get_all("Bcc"):
        raise _not_implemented("Cc or Bcc recipients")
    headers = [(k, str(v)) for k, v in message.items()]

    def addresses(name):
        values = message.get_all(name) or []
        return [addr for _, addr in email.utils.getaddresses([str(v) for v in values]) if addr]

    froms = addresses("From")
    text = html = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() in ("attachment", "inline"):
            continue
        kind = part.get_content_type()
        try:
            if kind == "text/plain" and text is None:
                text = part.get_content()
            elif kind == "text/html" and html is None:
                html = part.get_content()
        except (LookupError, ValueError):
            pass
    subject = message.get("Subject")
    return {
        "from": froms[0] if froms else None,
        "to": addresses("To"),
        "subject": None if subject is None else str(subject),
        "text": text,
        "html": html,
        "headers": headers,
    }
