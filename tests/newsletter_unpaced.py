"""``python tests/newsletter_unpaced.py ARGS``: the ``newsletter`` command,
as ``python -m newsletter ARGS`` runs it, except that the SES pre-flight
does not wait a second between its TestRenderEmailTemplate calls.

SES allows that call once a second, so every real run spends about a
second per shape of entry data before it sends; the SES stand-in does not
limit it. The tests that run many sends in processes (kill -9, lock, exit
codes) use this so they do not wait that out at every run;
tests/test_send_ses.py checks the pacing itself."""

from newsletter.cli import main
from newsletter.sending.senders import ses

ses.RENDER_INTERVAL = 0.0

if __name__ == "__main__":
    main()
