"""Alembic's environment for the newsletter's database (there is no
alembic.ini: ``newsletter.store.migrate.alembic_config`` builds the
configuration in code).

``newsletter.store.migrate`` runs the migrations with a connection of its
own, handed over in ``config.attributes["connection"]``: it is already
inside the migration's single transaction and holds the migration lock, so
this file neither begins nor commits anything. Without one (a developer
writing a revision, see ``migrate.new_revision``) it connects to the
configured ``sqlalchemy.url``.

The reader-action inbox (``reader_actions``) is not managed here: it is a
queue created on first use (with SQLite, in a file of its own), so the
comparison leaves it out (``migrate.include_name``).
"""

from alembic import context
from sqlalchemy import create_engine

from newsletter.store.migrate import include_name
from newsletter.store.schema import metadata


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot alter most things in place: autogenerate writes batch
        # operations (copy the table, then swap) for it.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("the newsletter's migrations run on a live database only (no --sql mode)")

given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            run(connection)
    finally:
        engine.dispose()
