"""Caller tokens: signed, expiring JWTs naming the caller, its role and (for a till) its merchant.

Verified with PyJWT against the keys in ``COFFER_TOKEN_KEYS``: a file of one or more PEM public
keys (Ed25519 → EdDSA, RSA → RS256), or a shared secret (HS256; any file without a PEM block, at
least :data:`MIN_SECRET_BYTES` bytes). Each key accepts only its own algorithm, so a token cannot
pick a weaker one (``alg: none``, or HS256 signed with a public key as the secret).

Claims: ``sub`` (caller), ``role``, ``merchant`` (optional), ``aud`` = ``coffer``, ``iat`` and
``exp``, both required; a token may live at most :data:`MAX_TOKEN_TTL_SECONDS`. The clocks of the
issuer and the engine may differ by :data:`CLOCK_SKEW_SECONDS` at most.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from engine.security.identity import Caller, role_named, unauthenticated

__all__ = [
    "AUDIENCE",
    "CLOCK_SKEW_SECONDS",
    "MAX_TOKEN_CHARS",
    "MAX_TOKEN_KEYS",
    "MAX_TOKEN_TTL_SECONDS",
    "MIN_SECRET_BYTES",
    "TokenKey",
    "TokenVerifier",
    "issue_token",
    "load_signing_key",
    "load_token_keys",
]

AUDIENCE = "coffer"
#: How far apart the issuer's and the engine's clocks may be (CONTRACT: at most 60 s).
CLOCK_SKEW_SECONDS = 30
#: A token may not be valid for longer than this, however it was minted.
MAX_TOKEN_TTL_SECONDS = 7 * 24 * 3600
MAX_TOKEN_CHARS = 4096
MAX_TOKEN_KEYS = 16
MIN_SECRET_BYTES = 32
#: Distinct tokens whose signature check is remembered (the times are checked on every call).
VERIFIED_CACHE_SIZE = 4096
_PEM_MARK = b"-----BEGIN"
_REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "aud"]

SigningKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | bytes
VerifyingKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | bytes


@dataclass(frozen=True)
class TokenKey:
    """One key that verifies tokens: its id (``kid``), its algorithm, the key itself."""

    key_id: str
    algorithm: str
    key: VerifyingKey


def _algorithm(key: SigningKey | VerifyingKey) -> str:
    if isinstance(key, bytes):
        return "HS256"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    return "RS256"


def _key_id(key: SigningKey | VerifyingKey) -> str:
    """A short fingerprint: the public key's DER (or the secret) hashed, so issuer and verifier agree."""
    if isinstance(key, bytes):
        material = key
    else:
        public = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) else key
        material = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return hashlib.sha256(material).hexdigest()[:16]


def _pem_blocks(data: bytes) -> list[bytes]:
    blocks: list[bytes] = []
    for part in data.split(_PEM_MARK)[1:]:
        blocks.append(_PEM_MARK + part)
    return blocks


def _secret(data: bytes, path: Path) -> bytes:
    secret = data.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: an HS256 secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def load_token_keys(path: Path) -> tuple[TokenKey, ...]:
    """The verifying keys in ``path`` (PEM public keys, or one HS256 secret). Raises ``ValueError``."""
    data = path.read_bytes()
    if _PEM_MARK not in data:
        secret = _secret(data, path)
        return (TokenKey(_key_id(secret), "HS256", secret),)
    keys: list[TokenKey] = []
    for block in _pem_blocks(data):
        public = serialization.load_pem_public_key(block)
        if not isinstance(public, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
            raise ValueError(f"{path}: only Ed25519 and RSA public keys verify tokens")
        keys.append(TokenKey(_key_id(public), _algorithm(public), public))
    if not 1 <= len(keys) <= MAX_TOKEN_KEYS:
        raise ValueError(f"{path}: between 1 and {MAX_TOKEN_KEYS} keys expected, found {len(keys)}")
    return tuple(keys)


def load_signing_key(path: Path) -> SigningKey:
    """A PEM private key (Ed25519 or RSA), or an HS256 secret."""
    data = path.read_bytes()
    if _PEM_MARK not in data:
        return _secret(data, path)
    private = serialization.load_pem_private_key(data, password=None)
    if not isinstance(private, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{path}: only Ed25519 and RSA private keys sign tokens")
    return private


def issue_token(
    key: SigningKey,
    *,
    caller: str,
    role: str,
    merchant_id: str | None = None,
    ttl_seconds: int = 3600,
    now_s: int | None = None,
) -> str:
    """A signed token. A negative ``ttl_seconds`` mints one that has already expired (for tests)."""
    if ttl_seconds > MAX_TOKEN_TTL_SECONDS:
        raise ValueError(f"a token may live at most {MAX_TOKEN_TTL_SECONDS} s")
    role_named(role)
    issued_s = int(time.time()) if now_s is None else now_s
    # An already-expired token is issued before it expires, so it fails on its expiry alone.
    claims: dict[str, Any] = {
        "sub": caller,
        "role": role,
        "aud": AUDIENCE,
        "iat": min(issued_s, issued_s + ttl_seconds - 1),
        "exp": issued_s + ttl_seconds,
    }
    if merchant_id:
        claims["merchant"] = merchant_id
    return jwt.encode(claims, key, algorithm=_algorithm(key), headers={"kid": _key_id(key)})


class TokenVerifier:
    """Turns a bearer token into a :class:`Caller`, or raises UNAUTHENTICATED."""

    def __init__(self, keys: tuple[TokenKey, ...]) -> None:
        if not 1 <= len(keys) <= MAX_TOKEN_KEYS:
            raise ValueError(f"between 1 and {MAX_TOKEN_KEYS} token keys expected")
        self._keys = keys
        self._by_id = {key.key_id: key for key in keys}
        # The signature of a token never changes, so its check is remembered; expiry is not.
        self._verified = functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)(self._verify_signature)

    @classmethod
    def from_file(cls, path: Path) -> TokenVerifier:
        return cls(load_token_keys(path))

    def caller(self, token: str, *, now_s: float | None = None) -> Caller:
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise unauthenticated(f"a bearer token of 1..{MAX_TOKEN_CHARS} characters is required")
        claims = self._verified(token)
        self._check_times(claims, time.time() if now_s is None else now_s)
        merchant = claims.get("merchant")
        if merchant is not None and not isinstance(merchant, str):
            raise unauthenticated("the token's merchant claim is not a string")
        subject = claims["sub"]
        role = claims["role"]
        if not isinstance(subject, str) or not isinstance(role, str):
            raise unauthenticated("the token's sub and role claims must be strings")
        return Caller(name=subject, role=role_named(role), merchant_id=merchant or None)

    def _candidates(self, token: str) -> tuple[TokenKey, ...]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("the token is malformed") from None
        chosen = self._by_id.get(str(header.get("kid", "")))
        return (chosen,) if chosen is not None else self._keys

    def _verify_signature(self, token: str) -> Mapping[str, Any]:
        for key in self._candidates(token):
            try:
                claims: Mapping[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm],
                    audience=AUDIENCE,
                    # Times are checked by _check_times on every call, cached or not.
                    options={
                        "require": _REQUIRED_CLAIMS,
                        "verify_exp": False,
                        "verify_iat": False,
                        "verify_nbf": False,
                    },
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as error:
                raise unauthenticated(f"the token is not valid ({type(error).__name__})") from None
            return claims
        raise unauthenticated("the token is not signed by a trusted key")

    @staticmethod
    def _check_times(claims: Mapping[str, Any], now_s: float) -> None:
        issued_s, expires_s = claims["iat"], claims["exp"]
        if not isinstance(issued_s, int | float) or not isinstance(expires_s, int | float):
            raise unauthenticated("the token's iat and exp must be numbers")
        if expires_s - issued_s > MAX_TOKEN_TTL_SECONDS:
            raise unauthenticated(f"the token lives longer than {MAX_TOKEN_TTL_SECONDS} s")
        if now_s > expires_s + CLOCK_SKEW_SECONDS:
            raise unauthenticated("the token has expired")
        if now_s < issued_s - CLOCK_SKEW_SECONDS:
            raise unauthenticated("the token is issued in the future")
        not_before_s = claims.get("nbf")
        if isinstance(not_before_s, int | float) and now_s < not_before_s - CLOCK_SKEW_SECONDS:
            raise unauthenticated("the token is not valid yet")
