"""Alembic environment for the store; `db.migrate` points Alembic here without any alembic.ini."""
