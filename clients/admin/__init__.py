"""The admin / developer CLI (``coffer`` / ``python -m clients.admin``); see :mod:`clients.admin.cli`."""

__all__: list[str] = []
