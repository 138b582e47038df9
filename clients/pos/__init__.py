"""The cashier's POS CLI (``python -m clients.pos`` / ``coffer-pos``); see :mod:`clients.pos.cli`."""

__all__: list[str] = []
