"""Is this installation ready for a real send? (``newsletter doctor``)

:func:`run_checks` looks at the settings, asks SES about the account, the
From identity and the configuration set (read-only calls: nothing is
changed or sent), and looks up the From domain's DMARC record. Each check
answers ``ok``, ``warn`` (a send goes out, but something should be fixed),
``fail`` (a send would fail, or receiving servers would refuse or junk its
mail, or readers could not unsubscribe) or ``skip`` (not checked: it does
not apply, or could not be looked at), with what was found and what to do.
:func:`exit_code` sums them up. No check raises: an AWS or DNS error is a
check's answer, and no check shows a secret.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Iterable
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from newsletter.core.config import Settings, masked_url
from newsletter.core.errors import ConfigError
from newsletter.core.models import CheckStatus
from newsletter.readers.tokens import GENERATE_HINT, check_secret

OK, WARN, FAIL, SKIP = CheckStatus.OK, CheckStatus.WARN, CheckStatus.FAIL, CheckStatus.SKIP

# Every run answers these checks, in this order.
CHECK_NAMES = ("Secret key", "Base URL", "SES account", "From identity", "DKIM", "MAIL FROM", "Configuration set",
               "Bounce and complaint events", "Rendering failure and delivery events", "SNS topics", "DMARC")
SES_CHECKS = CHECK_NAMES[2:10]

DNS_TIMEOUT = 5.0  # seconds for all of one lookup's tries
GUIDE = "see the guide docs/guides/ses.md, \"Going live on SES\""


@dataclass(frozen=True)
class Check:
    """One readiness check: its ``name`` (one of :data:`CHECK_NAMES`), its
    ``status`` (a :class:`CheckStatus`), what was found (``detail``) and,
    when it is not ok, what to do (``fix``)."""

    name: str
    status: str
    detail: str
    fix: str = ""


def run_checks(settings: Settings, ses_client=None, resolver=None) -> list[Check]:
    """Return one :class:`Check` per name of :data:`CHECK_NAMES`, in that order.

    ``ses_client`` is a boto3 ``sesv2`` client (default: built as the SES
    sender builds it); it is used only when the sender is ``ses``.
    ``resolver`` is anything with ``resolve(name, "TXT")`` as dnspython's
    resolver has it (default: the system's, with a 5-second limit). Never
    raises for what SES or DNS answer, or fail to answer.
    """
    checks = [_secret_key(settings), _base_url(settings), *_ses(settings, ses_client)]
    if resolver is None:
        try:
            resolver = system_resolver()
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf, no nameserver in it
            checks.append(Check("DMARC", SKIP, f"not checked (DNS unreachable: {exc})", _DNS_FIX))
            return checks
    checks.append(_dmarc(from_domain(settings), resolver))
    return checks


def exit_code(checks: Iterable[Check]) -> int:
    """Return 2 when a check failed (a send would fail), else 1 when one
    warns, else 0 (skipped checks count as ok)."""
    statuses = {check.status for check in checks}
    if FAIL in statuses:
        return 2
    return 1 if WARN in statuses else 0


def system_resolver() -> dns.resolver.Resolver:
    """Return the system's DNS resolver, giving up on a lookup after
    :data:`DNS_TIMEOUT` seconds. Raises ``dns.exception.DNSException`` when
    the system names no nameserver."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = DNS_TIMEOUT
    return resolver


def from_domain(settings: Settings) -> str:
    """Return the domain of the From address, in lower case."""
    return from_address(settings).rpartition("@")[2]


def from_address(settings: Settings) -> str:
    """Return the From address without its display name, in lower case."""
    return parseaddr(settings.from_address)[1].lower()


# --------------------------------------------------------------------------
# settings


def _secret_key(settings: Settings) -> Check:
    """The signing key: set, and strong (``tokens.check_secret``'s rules)."""
    name = "Secret key"
    hint = GENERATE_HINT[0].upper() + GENERATE_HINT[1:]
    try:
        check_secret("NEWSLETTER_SECRET_KEY", settings.secret_key)
    except ConfigError as exc:
        # The message names the variable and the rule, never the key; the
        # part after "; " is the hint, given as the fix instead.
        return Check(name, FAIL, str(exc).partition("; ")[0], f"{hint}, and set it as NEWSLETTER_SECRET_KEY in .env.")
    for position, key in enumerate(settings.secret_key_fallbacks, start=1):
        try:
            check_secret("NEWSLETTER_SECRET_KEY_FALLBACKS", key)
        except ConfigError as exc:
            return Check(name, FAIL, f"older key {position}: {str(exc).partition('; ')[0]}",
                         "Remove it from NEWSLETTER_SECRET_KEY_FALLBACKS (links signed with it stop working).")
    older = len(settings.secret_key_fallbacks)
    return Check(name, OK, "set and strong" + (f"; {older} older key(s) still accepted" if older else ""))


_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".test", ".invalid", ".example")


def _base_url(settings: Settings) -> Check:
    """NEWSLETTER_BASE_URL, which every link of an email starts with: a
    public https address. Plain http is a failure: the List-Unsubscribe
    link must be https for one-click unsubscribe (RFC 8058), which Gmail and
    Yahoo require of bulk senders; so is this machine's own address, which
    no reader can open. A private-looking host is a warning (it may be
    reachable where the readers are, an intranet)."""
    name = "Base URL"
    url = masked_url(settings.base_url)
    parts = urlsplit(settings.base_url)
    host = (parts.hostname or "").lower()
    fix = ("Set NEWSLETTER_BASE_URL to the web app's public https address (run it behind an HTTPS reverse proxy: "
           "see docs/guides/web-app.md, \"Behind an HTTPS proxy\").")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if host in _LOCAL_NAMES or host.endswith(".localhost") or (ip and (ip.is_loopback or ip.is_unspecified)):
        return Check(name, FAIL, f"{url} is this machine's own address: readers cannot open the unsubscribe, "
                                 "preferences and web links of their emails", fix)
    if not settings.public_https:
        return Check(name, FAIL, f"{url} is plain http: one-click unsubscribe (RFC 8058, required by Gmail and "
                                 "Yahoo from bulk senders) needs an https link", fix)
    if (ip and (ip.is_private or ip.is_link_local)) or "." not in host or host.endswith(_PRIVATE_SUFFIXES):
        return Check(name, WARN, f"{url} looks like a private address: readers outside your network cannot "
                                 "open its links", fix)
    return Check(name, OK, f"{url} (https, public)")


# --------------------------------------------------------------------------
# SES


class _Unanswered(Exception):
    """An SES call without a usable answer; its message says why in one line.

    ``code`` is SES's error code when SES answered (``NotFoundException``,
    ``AccessDeniedException``...), empty when no answer came at all (no
    credentials, endpoint unreachable, timeout)."""

    def __init__(self, reason: str, code: str = "", no_credentials: bool = False):
        super().__init__(reason)
        self.code = code
        self.no_credentials = no_credentials


def _ask(client, operation: str, **params) -> dict:
    """Return the answer of ``client.operation(**params)``; raises
    :class:`_Unanswered` for any AWS error."""
    try:
        return getattr(client, operation)(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code") or "Unknown"
        raise _Unanswered(f"{code}: {error.get('Message') or 'no message'}", code) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise _Unanswered(f"no AWS credentials ({exc})", no_credentials=True) from exc
    except BotoCoreError as exc:  # endpoint unreachable, timeouts, bad region and the like
        raise _Unanswered(str(exc)) from exc


# SES's codes for credentials it does not accept.
_BAD_CREDENTIALS = {"UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
                    "SignatureDoesNotMatch", "ExpiredTokenException", "ExpiredToken", "IncompleteSignature"}


def _fix_for(problem: _Unanswered, action: str, settings: Settings) -> str:
    """What to do about an SES call that failed; ``action`` is its IAM action."""
    if problem.no_credentials or problem.code in _BAD_CREDENTIALS:
        return ("Give this machine the AWS credentials the send uses (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or an instance role).")
    if problem.code in ("AccessDeniedException", "AccessDenied"):
        return f"Allow {action} in the IAM policy of these credentials."
    if not problem.code:
        where = settings.ses_endpoint_url or f"SES in {settings.aws_region}"
        return f"Check the network and AWS_REGION ({settings.aws_region}); the doctor asked {where}."
    return "Run `newsletter doctor` again; if it persists, look at SES in the AWS console."


def _not_checked(operation: str, problem: _Unanswered) -> str:
    """The detail of a check that SES's error on ``operation`` left open."""
    if problem.code:
        return f"not checked: SES answered {operation} with {problem}"
    return f"not checked: no answer from SES: {problem}"


def _ses(settings: Settings, client) -> list[Check]:
    """The SES checks (:data:`SES_CHECKS`, in order)."""
    if settings.sender != "ses":
        note = f"not checked: NEWSLETTER_SENDER is {settings.sender}, not ses"
        return [Check(name, SKIP, note) for name in SES_CHECKS]
    try:
        if client is None:
            from newsletter.sending.senders.ses import ses_client

            client = ses_client(settings)
        answered, account = True, _account(settings, client)
    except _Unanswered as problem:
        # No answer at all (no credentials, endpoint unreachable): a send
        # would fail the same way, and nothing else can be asked.
        answered, account = False, Check("SES account", FAIL, f"no answer from SES: {problem}",
                                         _fix_for(problem, "ses:GetAccount", settings))
    except BotoCoreError as exc:  # the client cannot be built (a malformed region)
        answered, account = False, Check("SES account", FAIL, f"no SES client: {exc}",
                                         "Check AWS_REGION and NEWSLETTER_SES_ENDPOINT_URL.")
    if not answered:
        return [account, *(Check(name, SKIP, "not checked: SES did not answer") for name in SES_CHECKS[1:])]
    region = settings.aws_region
    checks = [account, *_identity(settings, client, region)]
    configuration_set, events, topics = _configuration_set(settings, client, region)
    checks += [configuration_set, *events, _sns_topics(settings, topics)]
    return checks


def _account(settings: Settings, client) -> Check:
    """GetAccount: out of the sandbox, sending enabled, the quota. A send
    reads GetAccount first, so an error SES answers here is a failure.
    Raises :class:`_Unanswered` when no answer came at all."""
    name = "SES account"
    try:
        account = _ask(client, "get_account")
    except _Unanswered as problem:
        if not problem.code:
            raise
        return Check(name, FAIL, f"SES answered GetAccount with {problem}",
                     _fix_for(problem, "ses:GetAccount", settings))
    quota = account.get("SendQuota") or {}
    day, rate, sent = quota.get("Max24HourSend"), quota.get("MaxSendRate"), quota.get("SentLast24Hours") or 0
    day_text = "no daily limit" if day is None or day < 0 else f"{day:,.0f} messages a day"
    rate_text = "no rate limit" if rate is None or rate < 0 else f"{rate:,g} a second"
    quota_text = f"quota {day_text}, {rate_text}; {sent:,.0f} sent in the last 24 hours"
    region = settings.aws_region
    if account.get("SendingEnabled") is False:
        return Check(name, FAIL, f"sending is disabled for this account in {region} (paused by AWS or by you); "
                                 f"{quota_text}",
                     "Find out why in the SES console (Account dashboard, Reputation metrics), then re-enable "
                     "sending (aws sesv2 put-account-sending-attributes --sending-enabled).")
    if not account.get("ProductionAccessEnabled"):
        return Check(name, FAIL, f"still in the sandbox in {region}: mail goes only to verified addresses; "
                                 f"{quota_text}",
                     f"Request production access: SES console ({region}) → Account dashboard → Request production "
                     f"access ({GUIDE}).")
    if day is not None and day >= 0 and sent >= day:
        return Check(name, WARN, f"production access, sending enabled; the 24-hour quota is used up: {quota_text}",
                     "Wait for the 24-hour window to move on, or ask AWS for a higher quota (Service Quotas).")
    return Check(name, OK, f"production access, sending enabled in {region}; {quota_text}")


def _identity(settings: Settings, client, region: str) -> list[Check]:
    """GetEmailIdentity on the From domain, else the From address: the
    "From identity", "DKIM" and "MAIL FROM" checks."""
    domain, address = from_domain(settings), from_address(settings)
    identity = found_as = None
    for candidate in (domain, address):
        try:
            identity = _ask(client, "get_email_identity", EmailIdentity=candidate)
        except _Unanswered as problem:
            if problem.code == "NotFoundException":
                continue
            detail, fix = _not_checked("GetEmailIdentity", problem), _fix_for(problem, "ses:GetEmailIdentity", settings)
            return [Check("From identity", WARN, detail, fix), Check("DKIM", WARN, detail, fix),
                    Check("MAIL FROM", WARN, detail, fix)]
        found_as = candidate
        break
    verify_domain = (f"Verify the domain {domain} in SES ({region}): Identities → Create identity → Domain, with "
                     f"Easy DKIM; publish the three CNAME records it shows ({GUIDE}).")
    if identity is None:
        return [
            Check("From identity", FAIL, f"neither {domain} nor {address} is an SES identity in {region}: SES "
                                         "refuses mail from it", verify_domain),
            Check("DKIM", FAIL, f"no DKIM for {domain} (not an SES identity)", verify_domain),
            Check("MAIL FROM", SKIP, f"not checked: {domain} is not an SES identity"),
        ]
    return [_verified(identity, found_as, domain, region),
            _dkim(identity, found_as, domain, verify_domain),
            _mail_from(identity, domain, region)]


def _verified(identity: dict, found_as: str, domain: str, region: str) -> Check:
    name = "From identity"
    kind = "the address" if "@" in found_as else "the domain"
    if identity.get("VerifiedForSendingStatus"):
        also = "" if found_as == domain else f" (the domain {domain} is not an identity)"
        return Check(name, OK, f"{kind} {found_as} is verified for sending in {region}{also}")
    status = identity.get("VerificationStatus") or "not verified"
    if "@" in found_as:
        fix = f"Click the link in the email SES sent to {found_as}, or verify the domain {domain} instead."
    else:
        fix = f"Publish the DKIM CNAME records SES shows for {domain}; SES verifies the domain once it finds them."
    return Check(name, FAIL, f"{kind} {found_as} is not verified for sending yet ({status}): SES refuses mail "
                             "from it", fix)


def _dkim(identity: dict, found_as: str, domain: str, verify_domain: str) -> Check:
    """Easy DKIM: mail signed for the From domain, which is what lets it
    pass DMARC when the MAIL FROM does not align."""
    name = "DKIM"
    dkim = identity.get("DkimAttributes") or {}
    status = dkim.get("Status") or "NOT_STARTED"
    records = "; ".join(f"{token}._domainkey.{domain} CNAME {token}.dkim.amazonses.com"
                        for token in dkim.get("Tokens") or ())
    publish = f"Publish the DKIM CNAME records: {records}." if records else \
        f"Publish the DKIM CNAME records SES shows for {domain}."
    if status == "SUCCESS":
        if dkim.get("SigningEnabled") is False:
            return Check(name, WARN, f"the DKIM records of {domain} are verified but signing is off: mail is "
                                     "signed by amazonses.com only",
                         "Turn DKIM signing on: SES console → the identity → Authentication → DKIM → Edit.")
        return Check(name, OK, f"messages are signed for {domain} (SUCCESS)")
    if status == "PENDING":
        return Check(name, WARN, f"SES has not found the DKIM records of {domain} yet (PENDING; it looks for 72 "
                                 "hours)", publish)
    if status == "TEMPORARY_FAILURE":
        return Check(name, WARN, f"SES could not check the DKIM records of {domain} for a while "
                                 "(TEMPORARY_FAILURE); it keeps trying", publish)
    if status == "FAILED":
        return Check(name, FAIL, f"SES did not find the DKIM records of {domain} (FAILED): mail is not signed "
                                 "for it and fails DMARC", f"{publish} Then restart the DKIM verification in the "
                                                           "SES console.")
    if "@" in found_as:
        return Check(name, FAIL, f"only the address {found_as} is verified, not its domain: mail is not signed "
                                 f"for {domain} and fails DMARC", verify_domain)
    return Check(name, FAIL, f"DKIM is not set up for {domain} ({status}): mail is not signed for it and fails "
                             "DMARC", "Turn on Easy DKIM for the domain identity and publish its CNAME records.")


def _mail_from(identity: dict, domain: str, region: str) -> Check:
    """A custom MAIL FROM domain, a subdomain of the From domain, so that
    SPF passes for a domain aligned with the From (DMARC)."""
    name = "MAIL FROM"
    attributes = identity.get("MailFromAttributes") or {}
    mail_from = attributes.get("MailFromDomain") or ""
    status = attributes.get("MailFromDomainStatus") or ""
    records = (f"MX 10 feedback-smtp.{region}.amazonses.com and TXT \"v=spf1 include:amazonses.com ~all\"")
    if not mail_from:
        return Check(name, WARN, f"SES's own (amazonses.com): SPF passes, but not for {domain}, so DMARC rests "
                                 "on DKIM alone",
                     f"Set a custom MAIL FROM domain such as bounce.{domain} on the identity, and publish for it: "
                     f"{records}.")
    if status == "SUCCESS":
        return Check(name, OK, f"{mail_from} (SPF aligned with {domain})")
    fix = f"Publish for {mail_from}: {records}."
    if attributes.get("BehaviorOnMxFailure") == "REJECT_MESSAGE":
        return Check(name, FAIL, f"{mail_from} is {status} and the identity rejects messages on MX failure: SES "
                                 "refuses every send (MailFromDomainNotVerified)",
                     f"{fix} Or set \"behavior on MX failure\" to use amazonses.com meanwhile.")
    return Check(name, WARN, f"{mail_from} is {status}: SES uses amazonses.com until it finds the MX record", fix)


def _configuration_set(settings: Settings, client,
                       region: str) -> tuple[Check, list[Check], set[str] | None]:
    """The configuration set and its event destinations: the
    "Configuration set" check, the "Bounce and complaint events" and
    "Rendering failure and delivery events" checks, and the SNS topics that
    get these events (None when not known)."""
    name = settings.ses_configuration_set
    if not name:
        return (Check("Configuration set", WARN, "NEWSLETTER_SES_CONFIGURATION_SET is not set: no bounce or "
                                                 "complaint events are published for the newsletter's mail",
                      "Create a configuration set with an SNS event destination for bounces and complaints, and "
                      f"name it in NEWSLETTER_SES_CONFIGURATION_SET ({GUIDE})."),
                [Check(check, SKIP, "not checked: no configuration set") for check in EVENT_CHECKS], None)
    try:
        found = _ask(client, "get_configuration_set", ConfigurationSetName=name)
    except _Unanswered as problem:
        unchecked = [Check(check, SKIP, "not checked: the configuration set was not read") for check in EVENT_CHECKS]
        if problem.code == "NotFoundException":
            return (Check("Configuration set", FAIL, f"{name} does not exist in {region}: SES refuses every send "
                                                     "that names it",
                          f"Create it in the SES console ({region} → Configuration sets), or correct "
                          "NEWSLETTER_SES_CONFIGURATION_SET."), unchecked, None)
        return (Check("Configuration set", WARN, _not_checked("GetConfigurationSet", problem),
                      _fix_for(problem, "ses:GetConfigurationSet", settings)), unchecked, None)
    if (found.get("SendingOptions") or {}).get("SendingEnabled") is False:
        configuration_set = Check("Configuration set", FAIL, f"sending is disabled for the configuration set {name}",
                                  "Enable it: aws sesv2 put-configuration-set-sending-options "
                                  f"--configuration-set-name {name} --sending-enabled")
    else:
        configuration_set = Check("Configuration set", OK, f"{name} exists, sending enabled")
    events, topics = _events(settings, client, name)
    return configuration_set, events, topics


EVENT_CHECKS = CHECK_NAMES[7:9]


def _events(settings: Settings, client, name: str) -> tuple[list[Check], set[str] | None]:
    """The checks of the configuration set's event destinations (see
    :func:`_bounce_events` and :func:`_failure_events`), and the SNS topics
    they publish to (None when not known)."""
    try:
        destinations = _ask(client, "get_configuration_set_event_destinations",
                            ConfigurationSetName=name).get("EventDestinations") or []
    except _Unanswered as problem:
        return [Check(check, WARN, _not_checked("GetConfigurationSetEventDestinations", problem),
                      _fix_for(problem, "ses:GetConfigurationSetEventDestinations", settings))
                for check in EVENT_CHECKS], None
    topics: dict[str, set[str]] = {"BOUNCE": set(), "COMPLAINT": set(), "RENDERING_FAILURE": set(), "DELIVERY": set()}
    disabled = []
    for destination in destinations:
        arn = (destination.get("SnsDestination") or {}).get("TopicArn")
        kinds = set(destination.get("MatchingEventTypes") or ()) & set(topics)
        if not arn or not kinds:
            continue
        if not destination.get("Enabled"):
            disabled.append(destination.get("Name") or "?")
            continue
        for kind in kinds:
            topics[kind].add(arn)
    bounces, heard = _bounce_events(name, topics, disabled)
    failures = _failure_events(name, topics)
    every = set().union(*topics.values())
    return [bounces, failures], every or heard


def _failure_events(name: str, topics: dict[str, set[str]]) -> Check:
    """An enabled SNS event destination of the configuration set for
    rendering failures and for deliveries. Without the first, a message SES
    accepts and then cannot render is dropped and nobody learns of it (the
    ledger says sent); without the second, no delivery is counted."""
    check = EVENT_CHECKS[1]
    missing = [kind for kind in ("RENDERING_FAILURE", "DELIVERY") if not topics[kind]]
    fix = (f"Add the Rendering failure and Delivery event types to the SNS event destination of {name} (the topic "
           f"the web app's /sns or `bounces poll` reads): in the SES console, {name} → Event destinations → Edit, or "
           f"aws sesv2 update-configuration-set-event-destination --configuration-set-name {name} "
           "--event-destination-name NAME --event-destination "
           "'{\"Enabled\":true,\"MatchingEventTypes\":[\"BOUNCE\",\"COMPLAINT\",\"DELIVERY\",\"RENDERING_FAILURE\"],"
           "\"SnsDestination\":{\"TopicArn\":\"TOPIC\"}}'")
    if not missing:
        found = topics["RENDERING_FAILURE"] | topics["DELIVERY"]
        return Check(check, OK, f"rendering failures and deliveries go to SNS: {', '.join(sorted(found))}")
    if "RENDERING_FAILURE" in missing:
        return Check(check, WARN, f"{name} publishes no rendering failures to SNS: a reader whose message SES "
                                  "cannot render gets nothing while the ledger says sent"
                                  + ("" if len(missing) == 1 else ", and no delivery is counted"), fix)
    return Check(check, WARN, f"{name} publishes no deliveries to SNS: `newsletter stats` counts none", fix)


def _bounce_events(name: str, topics: dict[str, set[str]], disabled: list[str]) -> tuple[Check, set[str] | None]:
    """An enabled SNS event destination of the configuration set for
    bounces and for complaints. Missing ones are a warning: mail goes out,
    but the list keeps addresses that bounce or complain, and SES reviews
    accounts whose rates climb."""
    check = EVENT_CHECKS[0]
    heard = topics["BOUNCE"] | topics["COMPLAINT"]
    fix = (f"Add an event destination to {name}: SNS, for the Bounce and Complaint event types, to the topic the "
           f"web app's /sns or `bounces poll` reads ({GUIDE}).")
    missing = [kind.lower() + "s" for kind in ("BOUNCE", "COMPLAINT") if not topics[kind]]
    if not missing:
        return Check(check, OK, f"bounces and complaints go to SNS: {', '.join(sorted(heard))}"), heard
    off = f" (disabled: {', '.join(disabled)})" if disabled else ""
    if len(missing) == 2:
        return Check(check, WARN, f"{name} publishes neither bounces nor complaints to SNS{off}: the list keeps "
                                  "addresses that bounce or complain", fix), heard or None
    present = "complaints" if missing == ["bounces"] else "bounces"
    return Check(check, WARN, f"{name} publishes no {missing[0]} to SNS{off}; {present} go to "
                              f"{', '.join(sorted(heard))}", fix), heard


def _sns_topics(settings: Settings, topics: set[str] | None) -> Check:
    """NEWSLETTER_SNS_TOPIC_ARNS lists the topics SES publishes bounces and
    complaints to: /sns and ``bounces poll`` refuse any other topic."""
    name = "SNS topics"
    listed = set(settings.sns_topic_arns)
    if topics is None:
        if not listed:
            return Check(name, WARN, "NEWSLETTER_SNS_TOPIC_ARNS is not set: /sns and `bounces poll` refuse every "
                                     "notification",
                         "List the SNS topic of the bounce and complaint events in NEWSLETTER_SNS_TOPIC_ARNS.")
        return Check(name, SKIP, f"not compared: {len(listed)} topic(s) listed, no SNS event destination found")
    missing = sorted(topics - listed)
    if missing:
        return Check(name, WARN, f"NEWSLETTER_SNS_TOPIC_ARNS does not list {', '.join(missing)}: /sns and "
                                 "`bounces poll` would refuse its notifications",
                     f"Add {', '.join(missing)} to NEWSLETTER_SNS_TOPIC_ARNS.")
    return Check(name, OK, f"NEWSLETTER_SNS_TOPIC_ARNS lists {', '.join(sorted(topics))}")


# --------------------------------------------------------------------------
# DNS

_DNS_FIX = "Run `newsletter doctor` where DNS answers to check the DMARC record."
_DMARC = re.compile(r"\s*v\s*=\s*DMARC1\s*(;|$)", re.IGNORECASE)


def _dmarc_tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    return tags


def _dmarc(domain: str, resolver) -> Check:
    """The From domain's DMARC record, or its parent domain's (receivers
    fall back to the organizational domain's record): Gmail and Yahoo
    require one from bulk senders. Missing is a warning; DNS that does not
    answer is a skip."""
    name = "DMARC"
    labels = domain.split(".")
    # The domain, then each parent with at least two labels (example.org).
    candidates = [".".join(labels[i:]) for i in range(max(len(labels) - 1, 1))]
    for candidate in candidates:
        where = f"_dmarc.{candidate}"
        try:
            answer = resolver.resolve(where, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:  # timeouts, no nameserver answered
            return Check(name, SKIP, f"not checked (DNS unreachable: {exc})", _DNS_FIX)
        records = [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]
        found = [record for record in records if _DMARC.match(record)]
        if not found:
            continue
        if len(found) > 1:
            return Check(name, WARN, f"{where} has {len(found)} DMARC records: receivers ignore them all",
                         f"Keep one TXT record starting v=DMARC1 at {where}.")
        tags = _dmarc_tags(found[0])
        # A subdomain without its own record gets the parent's sp= (else p=).
        policy = tags.get("sp") if candidate != domain and "sp" in tags else tags.get("p")
        if not policy:
            return Check(name, WARN, f"{where} has a DMARC record without a policy (p=): {found[0]}",
                         f"Add p=none (or quarantine, reject) to the record at {where}.")
        covers = "" if candidate == domain else f" (covers {domain})"
        return Check(name, OK, f"{where}{covers}: policy p={policy}")
    return Check(name, WARN, f"no DMARC record at _dmarc.{domain}: Gmail and Yahoo require DMARC for bulk senders",
                 f"Publish a TXT record at _dmarc.{domain}: v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}")
