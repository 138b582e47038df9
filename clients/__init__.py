"""Callers of the coffer engine: the order-service client (:mod:`clients.order_client`), the
cashier POS CLI (:mod:`clients.pos`) and the load-test harness (:mod:`clients.loadtest`).

Importing this package imports nothing else, so ``clients.order_client`` stays usable with only
the ``client`` extra installed."""
