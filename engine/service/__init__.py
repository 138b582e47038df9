"""Use cases, one per module. Each takes the :class:`~engine.service.context.EngineContext` and a
command and returns a result; each runs in one unit of work on one shard."""
