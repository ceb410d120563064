"""``engine.execute_expanded``: a statement with an expanding parameter
(``IN`` a list), its SQL kept per number of values, gives what SQLAlchemy's
own execution of it gives, on SQLite and the real PostgreSQL; and
``engine.insert_many`` stores what an INSERT stores."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from newsletter.core.models import DeliveryStatus, SubscriberStatus
from newsletter.store import Ledger
from newsletter.store.engine import as_utc, driver_value, execute_expanded, insert_many
from newsletter.store.ledger import _FORGET_UNKNOWN, LedgerRow
from newsletter.store.picks import _PICK_COLUMNS
from newsletter.store.schema import deliveries_table, picks_table, subscribers_table

# An expanding parameter between a constant the statement carries (the
# status, an enum) and another parameter: the order the driver takes them in.
_AMONG = select(subscribers_table.c.id).where(
    subscribers_table.c.status == SubscriberStatus.ACTIVE,
    subscribers_table.c.id.in_(bindparam("ids", expanding=True)),
    subscribers_table.c.id >= bindparam("least"),
).order_by(subscribers_table.c.id)


# A list the statement carries itself (an expanding parameter with a value),
# beside one given at execution.
_IN_STATUSES = select(subscribers_table.c.id).where(
    subscribers_table.c.status.in_([SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED]),
    subscribers_table.c.id.in_(bindparam("ids", expanding=True)),
).order_by(subscribers_table.c.id)


def test_the_same_rows_as_sqlalchemy_for_every_size_and_order(store):
    readers = [store.add(f"reader{i}@example.com")[0] for i in range(60)]
    ids = [r.id for r in readers]
    for gone in readers[::7]:
        store.unsubscribe(gone.ref, source="test", reason="test")
    with store.reader.connect() as conn:
        for chosen in ([], ids[:1], ids[:50], ids[10:60], list(reversed(ids[:30])), [*ids[:3], 10**9]):
            for least in (0, ids[5]):
                expected = list(conn.scalars(_AMONG, {"ids": chosen, "least": least}))
                got = list(execute_expanded(conn, _AMONG, ids=chosen, least=least).scalars())
                assert got == expected, (chosen, least)
        # Some readers were left out by the status: the constant was bound.
        assert len(list(execute_expanded(conn, _AMONG, ids=ids, least=0).scalars())) == 60 - len(ids[::7])
        for chosen in (ids, ids[:8], ids[1:7]):
            expected = list(conn.scalars(_IN_STATUSES, {"ids": chosen}))
            assert list(execute_expanded(conn, _IN_STATUSES, ids=chosen).scalars()) == expected
        assert list(execute_expanded(conn, _IN_STATUSES, ids=ids).scalars()) == ids[::7]


def test_a_delete_with_an_expanding_parameter_deletes_only_what_it_names(store):
    ids = [store.add(f"reader{i}@example.com")[0].id for i in range(5)]
    ledger = Ledger(store, dt.date(2025, 3, 11))
    ledger.mark_pending(ids)
    ledger.record([LedgerRow(i, DeliveryStatus.UNKNOWN, None, "lost") for i in ids[:3]]
                  + [LedgerRow(i, DeliveryStatus.SENT, f"m-{i}", None) for i in ids[3:]])
    with store.engine.begin() as conn:
        deleted = execute_expanded(conn, _FORGET_UNKNOWN, day=ledger.day, ids=[ids[0], ids[1], ids[4]]).rowcount
    assert deleted == 2  # the "sent" row of ids[4] is not "unknown"
    with store.reader.connect() as conn:
        left = dict(conn.execute(select(deliveries_table.c.subscriber_id, deliveries_table.c.status)).all())
    assert left == {ids[2]: "unknown", ids[3]: "sent", ids[4]: "sent"}


def test_insert_many_stores_every_value_as_an_insert_would_on_both_databases(store):
    """``engine.insert_many`` (COPY on PostgreSQL): odd text, None, floats
    and time stamps come back as they went in; a row that breaks the
    primary key fails the whole insert and leaves none of its rows."""
    reader, _ = store.add("ada@example.com")
    odd = 'tab\there, back\\slash, "quote", new\nline, \\N, ünïcødé 📄'
    rows = [("2025-03-11", reader.id, n, f"2503.0000{n}", n, 0.25 + n, "interest", odd if n else "")
            for n in range(3)]
    stamp = dt.datetime(2025, 3, 11, 6, 0, 0, 123456, tzinfo=dt.timezone.utc)
    with store.engine.begin() as conn:
        insert_many(conn, picks_table, _PICK_COLUMNS, rows)
        at = driver_value(conn, deliveries_table.c.updated_at, stamp)
        insert_many(conn, deliveries_table, ("issue_date", "subscriber_id", "status", "message_id", "reason",
                                             "updated_at"), [("2025-03-11", reader.id, "pending", None, odd, at)])
    with store.reader.connect() as conn:
        stored = [tuple(r) for r in conn.execute(select(*(picks_table.c[name] for name in _PICK_COLUMNS))
                                                 .order_by(picks_table.c.position))]
        delivery = conn.execute(select(deliveries_table)).one()
    assert stored == rows
    assert (delivery.status, delivery.message_id, delivery.reason) == ("pending", None, odd)
    assert as_utc(delivery.updated_at) == stamp
    again = [("2025-03-12", reader.id, 0, "2503.00009", 0, 1.0, "interest", ""), rows[0]]
    with pytest.raises(IntegrityError):
        with store.engine.begin() as conn:
            insert_many(conn, picks_table, _PICK_COLUMNS, again)
    with store.reader.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(picks_table)) == 3
