"""One module per Alembic revision, named ``<revision>_<slug>.py`` (Alembic skips this file)."""
