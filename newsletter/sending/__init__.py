"""Sending an issue: the send loop (``dispatch``), its pacing
(``ratelimit``), the ways of delivering (``senders``), and one edition sent
again to one reader outside the ledger (``resend``)."""
