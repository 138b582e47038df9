"""Caller identity: who calls the engine, in which role, for which merchant (CONTRACT §3 Security).

* :mod:`engine.security.identity` — :class:`Role`, :class:`Caller`, the merchant-binding URI.
* :mod:`engine.security.certificates` — a caller from a verified client certificate (mTLS).
* :mod:`engine.security.tokens` — signed, expiring caller tokens (PyJWT): issue and verify.

The role → RPC map and the interceptor that enforces it are gRPC matters and live in
:mod:`engine.api.roles` and :mod:`engine.api.auth`.
"""
