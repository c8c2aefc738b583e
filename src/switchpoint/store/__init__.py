"""Durable data behind SQLAlchemy 2 Core and Alembic: credentials, the state version and call logs.

Knows nothing of HTTP; the hot path reads an in-memory snapshot built from `repo.load_credentials`.
"""
