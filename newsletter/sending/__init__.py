"""Sending an issue: a run of ``newsletter send`` planned (``plan``: which
editions, for whom) and carried out (``run``), the send loop (``dispatch``),
its pacing (``ratelimit``), the ways of delivering (``senders``), each
reader's message (``personalize``), and one message outside the ledger, a
test or an edition sent again to one reader (``single``)."""
