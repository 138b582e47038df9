"""Background jobs: ``python -m engine.jobs expire|settle|audit [--now ...]`` (CONTRACT §3 Jobs).

* ``expire`` runs every task of :data:`engine.jobs.registry.EXPIRE_TASKS` on every shard:
  expired holds are released (status EXPIRED), expired points lots expire, gift cards past their
  expiry are marked EXPIRED. Bounded (batches of ``job_batch_size``, at most
  ``MAX_BATCHES_PER_RUN`` batches per task and shard), idempotent (a second run finds nothing),
  and each run logs its counts. The server also runs it every ``job_interval_seconds``.
  ``expire --dry-run`` (:func:`engine.jobs.run.preview_expire`) prints what a run would change,
  counted per task and shard by one read-only, bounded query each, and changes nothing.
* ``audit`` runs the CONTRACT §8 checks and exits 1 when any is broken.
* ``settle`` arrives with settlement; it exits 2 until then.
"""
