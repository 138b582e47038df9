"""coffer's Alembic migration history: ``env.py``, ``versions/`` (one file per revision) and the
frozen schema of revision 0001. Run through :mod:`engine.storage.migrations`; docs/migrations.md."""
