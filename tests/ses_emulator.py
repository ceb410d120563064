"""aws-ses-v2-local: an SES v2 emulator written by others, run as a process
on 127.0.0.1 for the tests that send real editions through it (the
``ses_emulator`` fixture in conftest.py).

It is the npm package pinned in tests/js/package-lock.json (2.10.2) and
installed by tests/ensure-tools.sh; nothing is downloaded here. Unlike our
own stand-in (tests/sesv2_standin.py) it does not share our reading of
AWS's documentation: it renders stored templates with handlebars.js, raw
(no HTML escaping, as SES documents), and with
``AWS_SES_STRICT_TEMPLATE_RENDERING=true`` fails an entry whose data lacks a
plain ``{{x}}`` the template uses (names used only inside ``{{#if}}`` or
``{{#each}}`` are not checked).

What it implements of the calls the project makes (read in its
``dist/`` sources):

- ``GetAccount`` answers ``AWS_SES_ACCOUNT`` as given (:data:`ACCOUNT`);
  it enforces neither the rate nor the 24-hour quota.
- ``CreateEmailTemplate``, ``UpdateEmailTemplate``, ``DeleteEmailTemplate``
  and ``TestRenderEmailTemplate`` (always strict, as SES is for that call).
- ``SendBulkEmail`` with a stored template: the entry's data merged key by
  key over the default data; a rendering failure is that entry's
  ``FAILED`` status at once (SES accepts the entry and reports a Rendering
  Failure event later), which the sender records as a failed reader.
- ``SendEmail`` with ``Content.Raw``: the message is parsed (mailparser) and
  the store keeps its subject, text and HTML, and the addresses of its own
  To/Cc headers (not the call's ``Destination``).

Its gaps, handled by the tests that use it:

- A ``SendBulkEmail`` recipient must be a bare address: ``Name <addr>``
  fails the entry (its own address check, not SES's rule), so those tests'
  readers have no name.
- ``ConfigurationSetName`` is accepted and ignored: no events are published.
- No ``GetEmailIdentity``, ``GetConfigurationSet`` or
  ``GetConfigurationSetEventDestinations`` (only ``newsletter doctor`` calls
  them): it answers 404, so the doctor is not run against it.
- Its errors name their kind in the body's ``type``, which botocore does
  not read (it reads the ``X-Amzn-ErrorType`` header, or ``code`` in the
  body), so boto3 sees the HTTP status as the code (``400``, not
  ``AlreadyExistsException``) and the ``message`` without the ``detail``
  that says what was wrong. So a resumed bulk run, whose
  ``CreateEmailTemplate`` meets the template a stopped run left, stops
  there; the tests send each edition once, to a cleared store.
- The headers of a raw message are not kept; ``POST /clear-store`` also
  forgets the stored templates.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

JS = Path(__file__).resolve().parent / "js"
PACKAGE = JS / "node_modules" / "aws-ses-v2-local"
CLI = PACKAGE / "dist" / "cli.js"
STARTUP_SECONDS = 15

# The GetAccount answer: every field its schema asks for, and what the
# sender and the doctor read: out of the sandbox, sending enabled, a rate
# and a quota far above a test's few readers (so nothing waits on pacing).
ACCOUNT = {
    "DedicatedIpAutoWarmupEnabled": False,
    "Details": {
        "AdditionalContactEmailAddresses": [],
        "ContactLanguage": "EN",
        "MailType": "MARKETING",
        "ReviewDetails": {"CaseId": "", "Status": "GRANTED"},
        "UseCaseDescription": "A daily digest of research papers to readers who signed up.",
        "WebsiteURL": "http://127.0.0.1:8000/",
    },
    "EnforcementStatus": "HEALTHY",
    "ProductionAccessEnabled": True,
    "SendingEnabled": True,
    "SendQuota": {"Max24HourSend": 50_000.0, "MaxSendRate": 1_000.0, "SentLast24Hours": 0.0},
    "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
}


class EmulatorError(Exception):
    """The emulator could not be started, or answered unexpectedly."""


def missing() -> str | None:
    """Why the emulator cannot run here (node or the package missing), or
    None when it can."""
    if not shutil.which("node"):
        return "node is not installed (apt-get install nodejs npm; `make test` does it as root)"
    if not CLI.is_file():
        return ("tests/js/node_modules/aws-ses-v2-local is missing: run `bash tests/ensure-tools.sh` "
                "(npm ci in tests/js)")
    return None


class SesEmulator:
    """One aws-ses-v2-local process on ``port`` of 127.0.0.1."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> SesEmulator:
        """Start the process and return self once ``GET /health-check``
        answers 200. Raises :class:`EmulatorError`, with the process's
        output, when it exits or does not answer within
        :data:`STARTUP_SECONDS`."""
        env = {**os.environ, "AWS_SES_ACCOUNT": json.dumps(ACCOUNT), "AWS_SES_STRICT_TEMPLATE_RENDERING": "true"}
        # Set, it would also hand every message to that SMTP server.
        env.pop("SMTP_TRANSPORT", None)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["node", str(CLI), "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=JS, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._healthy():
            if self.process.poll() is not None:
                raise EmulatorError(f"aws-ses-v2-local exited with {self.process.returncode}: "
                                    f"{self.log_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(f"aws-ses-v2-local did not answer on port {self.port} "
                                    f"within {STARTUP_SECONDS} s: {self.log_path.read_text(errors='replace')}")
            time.sleep(0.02)
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health-check", timeout=1) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """Stop the process (terminate, then kill if it lingers)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def clear(self) -> None:
        """Forget every message and template (``POST /clear-store``)."""
        request = urllib.request.Request(f"{self.url}/clear-store", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            if answer.status != 200:
                raise EmulatorError(f"POST /clear-store answered {answer.status}")

    def store(self) -> dict:
        """Return ``GET /store``: ``{"templates": {...}, "emails": [...]}``;
        each email has ``destination`` (``to``, ``cc``, ``bcc``), ``from``,
        ``subject``, ``body`` (``text``, ``html``), ``headers`` (bulk only:
        ``[{"name", "value"}]``) and ``messageId``."""
        with urllib.request.urlopen(f"{self.url}/store", timeout=10) as answer:
            return json.load(answer)

    def emails(self) -> list[dict]:
        """The messages sent so far, in the order they were accepted."""
        return self.store()["emails"]
