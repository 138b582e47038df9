"""Storage adapters: schema, shard router, unit of work and the queries use cases need."""
