"""``newsletter doctor``: is this installation ready for a real send?

Run through the real command against the SES v2 stand-in on 127.0.0.1
(fake AWS credentials, no AWS configuration from this machine) and a stub
DNS resolver: no test reaches AWS or real DNS. A ready installation exits
0; each missing piece turns its own line to warn or fail and sets the exit
code; what SES or DNS fail to answer is a clean line, never a traceback.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import boto3
import dns.resolver
import pytest
from click.testing import CliRunner

import newsletter.operators.doctor
from conftest import SECRET, free_port
from newsletter.cli import cli
from newsletter.core.config import Settings
from newsletter.operators.doctor import CHECK_NAMES, Check, exit_code, run_checks
from newsletter.core.models import CheckStatus
from sesv2_standin import SesV2StandIn

TOPIC = "arn:aws:sns:us-east-1:123456789012:newsletter-feedback"
OTHER_TOPIC = "arn:aws:sns:us-east-1:123456789012:something-else"
AWS_SECRET = "doctor-test-aws-secret-Xq7"
DMARC = "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"
READ_ONLY = {"GetAccount", "GetEmailIdentity", "GetConfigurationSet", "GetConfigurationSetEventDestinations"}


class StubDns:
    """A resolver with ``resolve(name, "TXT")`` as dnspython's has it,
    answering from ``zone`` (name -> TXT strings); any other name is
    NXDOMAIN. ``fault`` is raised for every lookup instead, when set."""

    def __init__(self, zone: dict[str, list[str]] | None = None, fault: Exception | None = None):
        self.zone = zone or {}
        self.fault = fault
        self.asked: list[str] = []

    def resolve(self, name: str, rdtype: str):
        assert rdtype == "TXT"
        self.asked.append(name)
        if self.fault is not None:
            raise self.fault
        if name not in self.zone:
            raise dns.resolver.NXDOMAIN()
        # A long TXT record comes as several strings of at most 255 bytes.
        return [SimpleNamespace(strings=(text[:10].encode(), text[10:].encode())) for text in self.zone[name]]


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path):
    """Fake credentials, and no AWS configuration or instance metadata."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDOCTORTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found first: a fresh
    # one, so each test's environment is the one read.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(autouse=True)
def dns_zone(monkeypatch) -> StubDns:
    """The DNS every command of these tests sees: the From domain's DMARC
    record, and nothing else (never the real DNS)."""
    stub = StubDns({"_dmarc.example.org": [DMARC]})
    monkeypatch.setattr(newsletter.operators.doctor, "system_resolver", lambda: stub)
    return stub


@pytest.fixture
def ses():
    """An SES account ready for a real send: production access, the From
    domain verified with Easy DKIM and a custom MAIL FROM domain, and a
    configuration set publishing bounces and complaints to SNS."""
    with SesV2StandIn() as standin:
        standin.add_identity("example.org", mail_from="bounce.example.org")
        standin.add_configuration_set("newsletter")
        standin.add_event_destination("newsletter", "to-sns", ["BOUNCE", "COMPLAINT", "DELIVERY", "RENDERING_FAILURE"],
                                      sns_topic_arn=TOPIC)
        yield standin


@pytest.fixture
def env(ses) -> dict[str, str]:
    """The settings of an installation ready to send through ``ses``."""
    return {
        "NEWSLETTER_SENDER": "ses",
        "NEWSLETTER_SES_ENDPOINT_URL": ses.endpoint_url,
        "NEWSLETTER_FROM": "Daily Papers <papers@example.org>",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": "https://papers.example.org",
        "NEWSLETTER_SES_CONFIGURATION_SET": "newsletter",
        "NEWSLETTER_SNS_TOPIC_ARNS": TOPIC,
    }


def doctor(env: dict[str, str], *args: str):
    return CliRunner().invoke(cli, ["doctor", *args], env=env, catch_exceptions=False)


def report(env: dict[str, str]) -> tuple[int, dict[str, dict]]:
    """Run ``doctor --json``: its exit code and its checks by name (which
    are every check, in order)."""
    result = doctor(env, "--json")
    answer = json.loads(result.output)
    assert answer["exit_code"] == result.exit_code
    assert [check["name"] for check in answer["checks"]] == list(CHECK_NAMES)
    return result.exit_code, {check["name"]: check for check in answer["checks"]}


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


def line(output: str, name: str) -> tuple[str, str]:
    """The (mark, detail) of the line of check ``name`` in the text output."""
    match = re.search(rf"^(ok|WARN|FAIL|skip) +{re.escape(name)}  +(.*)$", output, flags=re.MULTILINE)
    assert match, f"no line for {name!r} in:\n{output}"
    return match.group(1), match.group(2)


ALL_OK = dict.fromkeys(CHECK_NAMES, "ok")


# --------------------------------------------------------------------------
# ready, and the sandbox


def test_a_ready_installation_exits_0_and_only_reads(ses, env):
    result = doctor(env)
    assert result.exit_code == 0, result.output
    for name in CHECK_NAMES:
        assert line(result.output, name)[0] == "ok"
    assert "fix:" not in result.output
    assert result.output.rstrip().endswith("Ready for a real send.")
    assert "quota 50,000 messages a day, 14 a second; 0 sent in the last 24 hours" in line(result.output,
                                                                                          "SES account")[1]
    assert line(result.output, "DMARC")[1] == "_dmarc.example.org: policy p=quarantine"
    assert line(result.output, "MAIL FROM")[1] == "bounce.example.org (SPF aligned with example.org)"
    # Only reads: nothing was sent, no template made.
    assert {request.operation for request in ses.requests} == READ_ONLY
    assert ses.sent == [] and ses.templates == {}


def test_a_sandbox_account_fails_with_the_fix_under_it(ses, env):
    ses.set_account(production_access=False)
    result = doctor(env)
    assert result.exit_code == 2
    mark, detail = line(result.output, "SES account")
    assert mark == "FAIL" and detail.startswith("still in the sandbox in us-east-1")
    lines = result.output.splitlines()
    below = lines[lines.index(next(x for x in lines if x.startswith("FAIL  SES account"))) + 1]
    assert below.lstrip().startswith("fix: Request production access")
    assert below.index("fix:") == lines[0].index("set and strong")  # under the details
    # Everything else is ready.
    assert all(line(result.output, name)[0] == "ok" for name in CHECK_NAMES if name != "SES account")
    assert result.output.rstrip().endswith("Not ready: a send would fail, or its mail be refused or junked.")


# --------------------------------------------------------------------------
# each missing piece


def _no_identity(ses, env):
    ses.remove_identity("example.org")


def _address_identity_only(ses, env):
    ses.remove_identity("example.org")
    ses.add_identity("papers@example.org")


CASES = {
    "sending disabled": (lambda ses, env: ses.set_account(sending_enabled=False),
                         {"SES account": "fail"}, "SES account", "sending is disabled for this account", 2),
    "24-hour quota used up": (lambda ses, env: ses.set_quota(sent_last_24_hours=50000),
                              {"SES account": "warn"}, "SES account", "the 24-hour quota is used up", 1),
    "no identity": (_no_identity, {"From identity": "fail", "DKIM": "fail", "MAIL FROM": "skip"},
                    "From identity", "neither example.org nor papers@example.org is an SES identity", 2),
    "only the address verified": (_address_identity_only, {"DKIM": "fail", "MAIL FROM": "warn"},
                                  "DKIM", "only the address papers@example.org is verified, not its domain", 2),
    "domain not verified": (lambda ses, env: ses.add_identity("example.org", verified=False, dkim="PENDING"),
                            {"From identity": "fail", "DKIM": "warn", "MAIL FROM": "warn"},
                            "From identity", "the domain example.org is not verified for sending yet (PENDING)", 2),
    "DKIM pending": (lambda ses, env: ses.add_identity("example.org", dkim="PENDING", mail_from="bounce.example.org"),
                     {"DKIM": "warn"}, "DKIM", "SES has not found the DKIM records of example.org yet", 1),
    "DKIM failed": (lambda ses, env: ses.add_identity("example.org", dkim="FAILED", mail_from="bounce.example.org"),
                    {"DKIM": "fail"}, "DKIM", "(FAILED): mail is not signed for it and fails DMARC", 2),
    "DKIM not started": (lambda ses, env: ses.add_identity("example.org", dkim="NOT_STARTED",
                                                           mail_from="bounce.example.org"),
                         {"DKIM": "fail"}, "DKIM", "DKIM is not set up for example.org", 2),
    "DKIM signing off": (lambda ses, env: ses.add_identity("example.org", dkim_signing=False,
                                                           mail_from="bounce.example.org"),
                         {"DKIM": "warn"}, "DKIM", "verified but signing is off", 1),
    "no custom MAIL FROM": (lambda ses, env: ses.add_identity("example.org"),
                            {"MAIL FROM": "warn"}, "MAIL FROM", "SES's own (amazonses.com)", 1),
    "MAIL FROM pending": (lambda ses, env: ses.add_identity("example.org", mail_from="bounce.example.org",
                                                            mail_from_status="PENDING"),
                          {"MAIL FROM": "warn"}, "MAIL FROM", "bounce.example.org is PENDING", 1),
    "MAIL FROM failed, messages rejected": (
        lambda ses, env: ses.add_identity("example.org", mail_from="bounce.example.org", mail_from_status="FAILED",
                                          behavior_on_mx_failure="REJECT_MESSAGE"),
        {"MAIL FROM": "fail"}, "MAIL FROM", "SES refuses every send (MailFromDomainNotVerified)", 2),
    "no configuration set setting": (
        lambda ses, env: env.pop("NEWSLETTER_SES_CONFIGURATION_SET"),
        {"Configuration set": "warn", "Bounce and complaint events": "skip", "Rendering failure and delivery events": "skip", "SNS topics": "skip"},
        "Configuration set", "NEWSLETTER_SES_CONFIGURATION_SET is not set", 1),
    "configuration set missing in SES": (
        lambda ses, env: ses.remove_configuration_set("newsletter"),
        {"Configuration set": "fail", "Bounce and complaint events": "skip", "Rendering failure and delivery events": "skip", "SNS topics": "skip"},
        "Configuration set", "newsletter does not exist in us-east-1", 2),
    "configuration set not sending": (lambda ses, env: ses.add_configuration_set("newsletter", sending_enabled=False),
                                      {"Configuration set": "fail", "Bounce and complaint events": "warn",
                                       "Rendering failure and delivery events": "warn", "SNS topics": "skip"},
                                      "Configuration set", "sending is disabled for the configuration set", 2),
    "no event destination": (lambda ses, env: ses.add_configuration_set("newsletter"),
                             {"Bounce and complaint events": "warn", "Rendering failure and delivery events": "warn", "SNS topics": "skip"},
                             "Bounce and complaint events", "publishes neither bounces nor complaints to SNS", 1),
    "bounces only": (lambda ses, env: (ses.add_configuration_set("newsletter"),
                                       ses.add_event_destination("newsletter", "b", ["BOUNCE"], sns_topic_arn=TOPIC)),
                     {"Bounce and complaint events": "warn", "Rendering failure and delivery events": "warn"},
                     "Bounce and complaint events", f"publishes no complaints to SNS; bounces go to {TOPIC}", 1),
    "destination disabled": (lambda ses, env: (ses.add_configuration_set("newsletter"), ses.add_event_destination(
                                 "newsletter", "to-sns", ["BOUNCE", "COMPLAINT"], sns_topic_arn=TOPIC, enabled=False)),
                             {"Bounce and complaint events": "warn", "Rendering failure and delivery events": "warn", "SNS topics": "skip"},
                             "Bounce and complaint events", "(disabled: to-sns)", 1),
    "events to CloudWatch only": (lambda ses, env: (ses.add_configuration_set("newsletter"), ses.add_event_destination(
                                      "newsletter", "metrics", ["BOUNCE", "COMPLAINT"])),
                                  {"Bounce and complaint events": "warn", "Rendering failure and delivery events": "warn", "SNS topics": "skip"},
                                  "Bounce and complaint events", "neither bounces nor complaints", 1),
    "no rendering failures": (lambda ses, env: (ses.add_configuration_set("newsletter"), ses.add_event_destination(
                                  "newsletter", "to-sns", ["BOUNCE", "COMPLAINT", "DELIVERY"], sns_topic_arn=TOPIC)),
                              {"Rendering failure and delivery events": "warn"}, "Rendering failure and delivery events",
                              "publishes no rendering failures to SNS: a reader whose message SES cannot render gets "
                              "nothing while the ledger says sent", 1),
    "no deliveries": (lambda ses, env: (ses.add_configuration_set("newsletter"), ses.add_event_destination(
                          "newsletter", "to-sns", ["BOUNCE", "COMPLAINT", "RENDERING_FAILURE"], sns_topic_arn=TOPIC)),
                      {"Rendering failure and delivery events": "warn"}, "Rendering failure and delivery events", "publishes no deliveries to SNS", 1),
    "SNS topics not set": (lambda ses, env: env.pop("NEWSLETTER_SNS_TOPIC_ARNS"),
                           {"SNS topics": "warn"}, "SNS topics", f"does not list {TOPIC}", 1),
    "another SNS topic listed": (lambda ses, env: env.update(NEWSLETTER_SNS_TOPIC_ARNS=OTHER_TOPIC),
                                 {"SNS topics": "warn"}, "SNS topics", f"does not list {TOPIC}", 1),
    "no DMARC record": (lambda ses, env: env.update(NEWSLETTER_FROM="Daily Papers <papers@example.net>")
                        or ses.add_identity("example.net", mail_from="bounce.example.net"),
                        {"DMARC": "warn"}, "DMARC",
                        "no DMARC record at _dmarc.example.net: Gmail and Yahoo require DMARC for bulk senders", 1),
    "no secret key": (lambda ses, env: env.pop("NEWSLETTER_SECRET_KEY"),
                      {"Secret key": "fail"}, "Secret key", "NEWSLETTER_SECRET_KEY is not set", 2),
    "weak secret key": (lambda ses, env: env.update(NEWSLETTER_SECRET_KEY="abcdefghijklmnopqrstuvwxyz0123456789"),
                        {"Secret key": "fail"}, "Secret key", "NEWSLETTER_SECRET_KEY is too weak", 2),
    "base URL on plain http": (lambda ses, env: env.update(NEWSLETTER_BASE_URL="http://papers.example.org"),
                               {"Base URL": "fail"}, "Base URL", "is plain http: one-click unsubscribe", 2),
    "base URL on plain http in capitals": (lambda ses, env: env.update(NEWSLETTER_BASE_URL="HTTP://papers.example.org"),
                                           {"Base URL": "fail"}, "Base URL", "is plain http: one-click unsubscribe", 2),
    "base URL on this machine": (lambda ses, env: env.update(NEWSLETTER_BASE_URL="https://localhost:8443"),
                                 {"Base URL": "fail"}, "Base URL", "is this machine's own address", 2),
    "base URL private": (lambda ses, env: env.update(NEWSLETTER_BASE_URL="https://10.0.0.5"),
                         {"Base URL": "warn"}, "Base URL", "looks like a private address", 1),
}


def test_a_base_url_in_capitals_passes_and_shows_no_password(ses, env):
    env["NEWSLETTER_BASE_URL"] = "HTTPS://editor:hunter2secret@Papers.Example.org"
    exit_status, checks = report(env)
    assert exit_status == 0
    assert checks["Base URL"]["detail"] == "https://editor:••••••@Papers.Example.org (https, public)"
    assert "hunter2secret" not in doctor(env).output


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_missing_piece_flips_its_line_and_the_exit_code(ses, env, case):
    change, changed, name, found, code = CASES[case]
    change(ses, env)
    exit_status, checks = report(env)
    assert statuses(checks) == {**ALL_OK, **changed}
    assert found in checks[name]["detail"]
    assert exit_status == code
    for check in checks.values():  # what to do, under everything that is not ok
        assert bool(check["fix"]) == (check["status"] in ("warn", "fail")), check


def test_a_pending_dkim_fix_names_the_records(ses, env):
    ses.add_identity("example.org", dkim="PENDING", mail_from="bounce.example.org")
    _code, checks = report(env)
    assert "example.org-dkim1._domainkey.example.org CNAME example.org-dkim1.dkim.amazonses.com" in \
        checks["DKIM"]["fix"]


def test_an_address_identity_alone_is_found_after_the_domain(ses, env):
    _address_identity_only(ses, env)
    _code, checks = report(env)
    assert checks["From identity"]["status"] == "ok"
    assert checks["From identity"]["detail"] == ("the address papers@example.org is verified for sending in us-east-1 "
                                                 "(the domain example.org is not an identity)")
    asked = [r.operation for r in ses.requests if r.operation == "GetEmailIdentity"]
    assert asked == ["GetEmailIdentity", "GetEmailIdentity"]


# --------------------------------------------------------------------------
# DNS


@pytest.mark.parametrize("fault", [dns.resolver.LifetimeTimeout(timeout=5.0, errors={}),
                                   dns.resolver.NoNameservers()])
def test_dns_unreachable_is_not_checked_and_not_a_failure(env, dns_zone, fault):
    dns_zone.fault = fault
    result = doctor(env)
    mark, detail = line(result.output, "DMARC")
    assert mark == "skip" and detail.startswith("not checked (DNS unreachable")
    assert result.exit_code == 0, result.output


def test_no_resolver_configuration_is_not_checked(env, monkeypatch):
    def no_nameservers():
        raise dns.resolver.NoResolverConfiguration("no nameservers")

    monkeypatch.setattr(newsletter.operators.doctor, "system_resolver", no_nameservers)
    exit_status, checks = report(env)
    assert checks["DMARC"]["status"] == "skip" and "DNS unreachable" in checks["DMARC"]["detail"]
    assert exit_status == 0


def dmarc(zone: dict[str, list[str]], sender: str = "papers@example.org") -> Check:
    stub = StubDns(zone)
    checks = run_checks(Settings(from_address=f"Papers <{sender}>"), resolver=stub)
    return checks[-1]


def test_dmarc_records_read():
    assert dmarc({"_dmarc.example.org": ["v=DMARC1; p=none"]}).detail == "_dmarc.example.org: policy p=none"
    # A subdomain without a record of its own is covered by its parent's (sp= first).
    found = dmarc({"_dmarc.example.org": ["v=DMARC1; p=reject; sp=quarantine"]}, "papers@news.example.org")
    assert (found.status, found.detail) == ("ok", "_dmarc.example.org (covers news.example.org): policy p=quarantine")
    # Other TXT records are not DMARC; a name with only those has none.
    missing = dmarc({"_dmarc.example.org": ["google-site-verification=abc"]})
    assert missing.status == "warn" and missing.fix.startswith("Publish a TXT record at _dmarc.example.org: v=DMARC1;")
    two = dmarc({"_dmarc.example.org": ["v=DMARC1; p=none", "v=DMARC1; p=reject"]})
    assert two.status == "warn" and "2 DMARC records" in two.detail
    no_policy = dmarc({"_dmarc.example.org": ["v=DMARC1; rua=mailto:d@example.org"]})
    assert no_policy.status == "warn" and "without a policy" in no_policy.detail


# --------------------------------------------------------------------------
# other senders, SES not answering, secrets


@pytest.mark.parametrize("sender", ["outbox", "smtp"])
def test_other_senders_skip_the_ses_checks(ses, env, sender):
    env["NEWSLETTER_SENDER"] = sender
    result = doctor(env)
    for name in CHECK_NAMES[2:9]:
        assert line(result.output, name) == ("skip", f"not checked: NEWSLETTER_SENDER is {sender}, not ses")
    assert line(result.output, "DMARC")[0] == "ok"
    assert result.exit_code == 0
    assert ses.requests == []


def test_ses_endpoint_down_is_a_clean_line(env):
    env["NEWSLETTER_SES_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    result = doctor(env)
    assert result.exit_code == 2
    mark, detail = line(result.output, "SES account")
    assert mark == "FAIL" and detail.startswith("no answer from SES: Could not connect to the endpoint URL")
    assert "fix: Check the network and AWS_REGION (us-east-1)" in result.output
    for name in CHECK_NAMES[3:9]:
        assert line(result.output, name) == ("skip", "not checked: SES did not answer")
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_missing_credentials_are_a_clean_line(env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    exit_status, checks = report(env)
    assert exit_status == 2
    assert checks["SES account"]["detail"].startswith("no answer from SES: no AWS credentials")
    assert checks["SES account"]["fix"].startswith("Give this machine the AWS credentials the send uses")


def test_access_denied_is_a_clean_line(ses, env):
    ses.fail_next(1, 400, "AccessDeniedException", "User is not authorized to perform ses:GetEmailIdentity",
                  operation="GetEmailIdentity")
    exit_status, checks = report(env)
    assert statuses(checks) == {**ALL_OK, "From identity": "warn", "DKIM": "warn", "MAIL FROM": "warn"}
    assert checks["DKIM"]["detail"] == ("not checked: SES answered GetEmailIdentity with AccessDeniedException: "
                                        "User is not authorized to perform ses:GetEmailIdentity")
    assert checks["DKIM"]["fix"] == "Allow ses:GetEmailIdentity in the IAM policy of these credentials."
    assert exit_status == 1

    # A send reads GetAccount first: denied there, a send would fail.
    ses.fail_next(1, 400, "AccessDeniedException", "not authorized", operation="GetAccount")
    exit_status, checks = report(env)
    assert checks["SES account"]["status"] == "fail" and checks["From identity"]["status"] == "ok"
    assert checks["SES account"]["fix"] == "Allow ses:GetAccount in the IAM policy of these credentials."
    assert exit_status == 2


def test_no_secret_is_ever_printed(ses, env):
    weak = "abcdefghijklmnopqrstuvwxyz0123456789"
    env.update(NEWSLETTER_SECRET_KEY_FALLBACKS=f"ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0,{weak}",
               NEWSLETTER_SMTP_PASSWORD="smtp-password-Zr4")
    for args in ((), ("--json",)):
        result = doctor(env, *args)
        assert "older key 2: NEWSLETTER_SECRET_KEY_FALLBACKS is too weak" in result.output
        for secret in (SECRET, weak, "ly12xlEa51C9", "smtp-password-Zr4", AWS_SECRET):
            assert secret not in result.output
    env["NEWSLETTER_SECRET_KEY"] = weak
    result = doctor(env)
    assert line(result.output, "Secret key")[0] == "FAIL" and weak not in result.output


def test_a_malformed_setting_is_one_error_line(env):
    env["NEWSLETTER_SENDER"] = "pigeon"
    result = doctor(env)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: NEWSLETTER_SENDER must be one of outbox, ses, smtp, got 'pigeon'"]


# --------------------------------------------------------------------------
# the interface other code calls


def test_run_checks_answers_every_check_in_order(ses):
    settings = Settings(sender="ses", secret_key=SECRET, base_url="https://papers.example.org",
                        from_address="papers@example.org", ses_configuration_set="newsletter",
                        sns_topic_arns=(TOPIC,))
    checks = run_checks(settings, ses_client=ses.client(), resolver=StubDns({"_dmarc.example.org": [DMARC]}))
    assert [check.name for check in checks] == list(CHECK_NAMES)
    assert all(check.status == CheckStatus.OK and check.fix == "" for check in checks)
    assert exit_code(checks) == 0


def test_exit_code():
    ok, warn, fail, skip = (Check("x", status, "") for status in CheckStatus)
    assert exit_code([ok, skip, skip]) == 0
    assert exit_code([ok, warn, skip]) == 1
    assert exit_code([warn, fail, ok]) == 2
    assert exit_code([]) == 0
