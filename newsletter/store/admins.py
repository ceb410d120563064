"""The dashboard's operators: their accounts, their sessions and the login
attempts counted by the limits. Passwords arrive here already hashed (see
``newsletter.operators.passwords``); sessions by the SHA-256 of their token."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter.core.models import Admin
from newsletter.store.engine import as_utc
from newsletter.store.schema import admin_logins_table, admin_sessions_table, admins_table

# PostgreSQL advisory lock taken while a login attempt is counted and recorded.
LOGIN_LOCK_KEY = 0x6E6C41444D4E  # "nlADMN"
# How long login attempts are kept (the limits look back less far).
LOGINS_KEPT = dt.timedelta(days=1)


def _admin(row) -> Admin:
    return Admin(id=row.id, name=row.name, created_at=as_utc(row.created_at),
                 password_changed_at=as_utc(row.password_changed_at),
                 last_login_at=as_utc(row.last_login_at) if row.last_login_at else None,
                 password_hash=row.password_hash)


class Admins:
    """The operators' part of :class:`newsletter.store.Store`."""

    # ---------------------------------------------------------------- accounts

    def has_admins(self) -> bool:
        """Whether at least one operator exists (else the dashboard is off)."""
        with self.reader.connect() as conn:
            return conn.scalar(select(admins_table.c.id).limit(1)) is not None

    def admins(self) -> list[Admin]:
        """Every operator, by name."""
        with self.reader.connect() as conn:
            return [_admin(row) for row in conn.execute(select(admins_table).order_by(admins_table.c.name))]

    def get_admin(self, name: str) -> Admin | None:
        """The operator called ``name`` (as stored: lower-case), or None."""
        with self.reader.connect() as conn:
            row = conn.execute(select(admins_table).where(admins_table.c.name == name)).first()
        return _admin(row) if row else None

    def add_admin(self, name: str, password_hash: str) -> bool:
        """Add the operator ``name``; returns False (changing nothing) when
        one of that name exists."""
        stamp = self.clock()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(admins_table).values(name=name, password_hash=password_hash, created_at=stamp,
                                                         password_changed_at=stamp))
        except IntegrityError:
            return False
        return True

    def remove_admin(self, name: str) -> bool:
        """Remove the operator ``name`` and end their sessions; returns
        whether there was one."""
        with self.engine.begin() as conn:
            admin_id = conn.scalar(select(admins_table.c.id).where(admins_table.c.name == name))
            if admin_id is None:
                return False
            conn.execute(delete(admin_sessions_table).where(admin_sessions_table.c.admin_id == admin_id))
            conn.execute(delete(admins_table).where(admins_table.c.id == admin_id))
        return True

    def set_admin_password(self, name: str, password_hash: str, *, end_sessions: bool = True) -> bool:
        """Store a new password hash for ``name`` and (by default) end every
        session of theirs; returns whether the operator exists."""
        with self.engine.begin() as conn:
            admin_id = conn.scalar(select(admins_table.c.id).where(admins_table.c.name == name))
            if admin_id is None:
                return False
            values = {"password_hash": password_hash}
            if end_sessions:
                values["password_changed_at"] = self.clock()
                conn.execute(delete(admin_sessions_table).where(admin_sessions_table.c.admin_id == admin_id))
            conn.execute(update(admins_table).where(admins_table.c.id == admin_id).values(**values))
        return True

    # ---------------------------------------------------------------- logins

    def begin_login(self, name_key: str, client: str, *, window: dt.timedelta, per_name_and_client: int,
                    per_client: int) -> tuple[int, int] | None:
        """Record a login attempt for ``name_key`` from ``client`` as
        "pending", unless that client's attempts in the last ``window`` that
        did not succeed (failed, or still being checked) already reach
        ``per_name_and_client`` for that name or ``per_client`` in all.
        Counting and recording are one atomic step (one writer at a time),
        so parallel attempts cannot get past a limit. Returns the attempt's
        id and how many attempts for that name in the window, from any
        client, did not succeed before it; None when a limit is reached.
        Both keys are kept to 64 characters."""
        a = admin_logins_table
        name_key, client = name_key[:64], client[:64]
        stamp = self.clock()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOGIN_LOCK_KEY})")
            conn.execute(delete(a).where(a.c.at < stamp - LOGINS_KEPT))
            unsuccessful = select(func.count()).select_from(a).where(a.c.outcome != "ok", a.c.at >= stamp - window)
            if conn.scalar(unsuccessful.where(a.c.name_key == name_key, a.c.client == client)) >= per_name_and_client:
                return None
            if conn.scalar(unsuccessful.where(a.c.client == client)) >= per_client:
                return None
            failures = conn.scalar(unsuccessful.where(a.c.name_key == name_key))
            attempt_id = conn.execute(insert(a).values(at=stamp, name_key=name_key, client=client, outcome="pending")
                                      ).inserted_primary_key[0]
        return attempt_id, failures

    def end_login(self, attempt_id: int, succeeded: bool) -> None:
        """Record the outcome of the attempt :meth:`begin_login` recorded."""
        with self.engine.begin() as conn:
            conn.execute(update(admin_logins_table).where(admin_logins_table.c.id == attempt_id)
                         .values(outcome="ok" if succeeded else "failed"))

    # ---------------------------------------------------------------- sessions

    def start_session(self, admin_id: int, token_hash: str, client: str, idle: dt.timedelta) -> None:
        """Record a new session of the operator ``admin_id``, note the
        login, and drop sessions idle for longer than ``idle``."""
        s = admin_sessions_table
        stamp = self.clock()
        with self.engine.begin() as conn:
            conn.execute(delete(s).where(s.c.last_seen_at < stamp - idle))
            conn.execute(insert(s).values(token_hash=token_hash, admin_id=admin_id, created_at=stamp,
                                          last_seen_at=stamp, client=client[:64]))
            conn.execute(update(admins_table).where(admins_table.c.id == admin_id).values(last_login_at=stamp))

    def session_admin(self, token_hash: str, idle: dt.timedelta,
                      touch_after: dt.timedelta = dt.timedelta(minutes=1)) -> Admin | None:
        """The operator of the session ``token_hash``, or None when there is
        no such session or it was idle for longer than ``idle`` (then it is
        deleted). A session in use is marked seen, at most once per
        ``touch_after`` (a write per page would be a write per click)."""
        s = admin_sessions_table
        stamp = self.clock()
        with self.reader.connect() as conn:
            row = conn.execute(select(s.c.last_seen_at, admins_table)
                               .select_from(s.join(admins_table, admins_table.c.id == s.c.admin_id))
                               .where(s.c.token_hash == token_hash)).first()
        if row is None:
            return None
        seen = as_utc(row.last_seen_at)
        if stamp - seen > idle:
            self.end_session(token_hash)
            return None
        if stamp - seen > touch_after:
            with self.engine.begin() as conn:
                conn.execute(update(s).where(s.c.token_hash == token_hash).values(last_seen_at=stamp))
        return _admin(row)

    def end_session(self, token_hash: str) -> None:
        """Delete the session ``token_hash`` (nothing when there is none)."""
        with self.engine.begin() as conn:
            conn.execute(delete(admin_sessions_table).where(admin_sessions_table.c.token_hash == token_hash))
