"""Alembic environment of the history database (a package so that it ships with sing_backend)."""
