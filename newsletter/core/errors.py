"""Every error the newsletter raises on purpose.

All of them derive from :class:`NewsletterError`; the command line turns any of
them into a one-line message and an exit code (``exit_code``) instead of a
traceback. Anything else that escapes is a bug.
"""


class NewsletterError(Exception):
    """Root of the hierarchy. ``exit_code`` is what the CLI exits with."""

    exit_code = 2


class ConfigError(NewsletterError):
    """A setting in the environment or ``.env`` is missing, malformed or unsafe."""


class BatchError(NewsletterError):
    """A batch file cannot be read or holds invalid data.

    ``source`` names the file and ``where`` the line or entry, so the message
    points a person at the exact place to fix.
    """

    def __init__(self, source: str, message: str, where: str | None = None):
        self.source = source
        self.where = where
        self.detail = message
        location = f"{source}, {where}" if where else source
        super().__init__(f"{location}: {message}")


class FetchError(NewsletterError):
    """Downloading a day's papers failed (network error, HTTP error, timeout or
    an unreadable answer). Nothing has been written when it is raised."""

    exit_code = 1


class ThumbnailError(FetchError):
    """A paper's thumbnail could not be copied: its download failed, or it
    is not a picture that can be read (broken, too large, not an image)."""


class RenderError(NewsletterError):
    """A template is missing or broken, or the compiled email is unusable."""


class OutputError(NewsletterError):
    """A file or folder that a command writes cannot be written."""


class StoreError(NewsletterError):
    """The subscriber database cannot be opened or used (bad URL, unreachable
    server, schema newer than this release)."""


class StoreBusy(StoreError):
    """A write could not get the database within its short wait, because a
    long operation (an import, a migration) holds it. Reader actions that
    meet it stay recorded and are applied as soon as the database is free."""


class DatabaseMissing(StoreError):
    """There is no newsletter database where the settings point (no SQLite
    file, or a database with none of its tables), for a command that only
    uses one: commands that read the list never create an empty one.
    ``where`` names it (a file's path, a URL without its password)."""

    def __init__(self, message: str, where: str):
        self.where = where
        super().__init__(message)


class EditionNotStored(StoreError):
    """The edition asked for is not in the database (never rendered or sent)."""


class InvalidEmail(NewsletterError):
    """An email address is not syntactically valid."""


class TokenError(NewsletterError):
    """A signed link is forged, truncated, tampered with, or made for another
    purpose. Its message never says who the link was for."""


class RateLimited(NewsletterError):
    """A reader (or a client) made more changes than the limits allow in a
    short time: this one was not recorded. ``retry_after`` is the number of
    seconds until one more may be."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"too many changes in a short time: try again in {retry_after} s")


class InvalidProfile(NewsletterError):
    """What a reader told us they read is malformed: a category or seed
    paper that is not one, a number of picks out of range (see
    ``newsletter.picks.interests``)."""


class InvalidQuery(NewsletterError):
    """A search of the paper archive cannot be run as asked (too long)."""


class ListError(NewsletterError):
    """A subscriber list file (CSV) is missing, unreadable or malformed."""


class Refused(NewsletterError):
    """An operation was refused to protect a reader or the list, such as
    reactivating an address that unsubscribed, bounced or complained."""


class SendError(NewsletterError):
    """Sending stopped before every reader was handled; re-running the same
    send picks up where it stopped."""

    exit_code = 1


class SendLocked(SendError):
    """Another run is sending the same issue right now; this one sent nothing."""

    exit_code = 4


class ReadersFailed(SendError):
    """The run went through the list, but the provider refused some readers
    for good (``MessageRejected``, an invalid address). They are recorded
    "failed" and are not retried."""


class AccountError(SendError):
    """The provider refuses to send for the whole account (suspended, sending
    paused, sender not verified, daily quota exhausted) or keeps failing:
    nothing more can be sent until a person acts."""

    exit_code = 3


class TemplateRejected(SendError):
    """SES cannot render the edition's stored template for one kind of
    reader (its pre-flight ``TestRenderEmailTemplate`` failed): every such
    reader's message would be dropped, so nothing was sent."""

    exit_code = 2


class Throttled(SendError):
    """The provider answered "slow down"; nothing in that call was sent."""


class TransientError(SendError):
    """A temporary fault (5xx, connection refused) before anything was sent."""


class SnsError(NewsletterError):
    """An SNS message is unsigned, forged, too old or dated in the future, for
    a topic that is not configured, or cannot be acted on: it is refused and
    changes nothing (:class:`SnsMalformed` when it is not even well formed)."""


class SnsMalformed(SnsError):
    """An SNS message, or the SES notification inside it, is not well formed:
    not UTF-8 or not JSON, nested too deeply, missing a field, or holding a
    field of the wrong type or size. It is answered 400 instead of 403 (it is
    broken, not forged) and, like any refused message, changes nothing."""


class InvalidPassword(NewsletterError):
    """An operator's password is refused: too short, too common or easy to
    guess. Its message never repeats the password."""


class AdminError(NewsletterError):
    """An operator's account cannot be added or changed: a malformed name,
    a name already taken, or no operator of that name."""
