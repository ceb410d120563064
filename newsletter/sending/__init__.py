"""Sending an issue: the send loop (``dispatch``), its pacing
(``ratelimit``) and the ways of delivering (``senders``)."""
