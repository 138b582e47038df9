"""The load-test harness: ``python -m clients.loadtest --target HOST:PORT ...`` (see docs/clients.md)."""
