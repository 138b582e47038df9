"""coffer: the transaction engine holding every user's stored value.

Layers, inner to outer:

* :mod:`engine.domain` — pure rules (money, ids, leg planning, refunds, points, coupons). No I/O.
* :mod:`engine.storage` — SQLAlchemy Core schema, shard router, unit of work, queries.
* :mod:`engine.service` — one use case per module, each a function over a unit of work.
* :mod:`engine.api` — the gRPC adapter: proto -> command -> result -> proto.
"""
