"""The engine behind TLS with caller identities (docs/security.md), and raw gRPC callers for it.

:func:`make_certs` runs ``scripts/make_certs.py`` into a directory; :class:`SecureEngine` starts
``python server.py`` with ``COFFER_AUTH=mtls`` (client certificates) or ``token`` (bearer tokens);
:class:`SecureCaller` is one caller's channel and metadata with both services' stubs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc

from coffer.v1 import admin_pb2_grpc, engine_pb2_grpc
from engine.security.identity import Role
from engine.security.tokens import issue_token, load_signing_key
from tests.support.engines import REPOSITORY, EngineProcess, wait_serving
from tests.support.servers import free_port

__all__ = [
    "CALL_TIMEOUT_SECONDS",
    "POS_MERCHANT_ID",
    "AuthMode",
    "CertificateFiles",
    "SecureCaller",
    "SecureEngine",
    "bearer",
    "make_certs",
    "mint_token",
]

#: What ``scripts/make_certs.py`` binds the ``pos`` certificate to.
POS_MERCHANT_ID = "m-pos-1"
CALL_TIMEOUT_SECONDS = 15


class AuthMode(StrEnum):
    MTLS = "mtls"
    TOKEN = "token"


@dataclass(frozen=True)
class CertificateFiles:
    """A directory written by ``scripts/make_certs.py``."""

    directory: Path

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    @property
    def ca(self) -> bytes:
        return self.read("ca.pem")

    def client_pair(self, role: Role) -> tuple[bytes, bytes]:
        """(private key, certificate chain) of ``role``'s client certificate."""
        return self.read(f"{role.value}.key"), self.read(f"{role.value}.pem")

    @property
    def signing_key(self) -> Path:
        return self.directory / "token-signing.key"


def make_certs(directory: Path, *, ca_name: str = "coffer test CA") -> CertificateFiles:
    """Run the cert script (``make certs``) into ``directory``."""
    subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "scripts" / "make_certs.py"),
            "--out",
            str(directory),
            "--ca-name",
            ca_name,
        ],
        check=True,
        capture_output=True,
        cwd=REPOSITORY,
    )
    return CertificateFiles(directory)


def mint_token(
    certs: CertificateFiles, role: Role, *, merchant_id: str | None = None, ttl_seconds: int = 600
) -> str:
    if role is Role.POS and merchant_id is None:
        merchant_id = POS_MERCHANT_ID
    key = load_signing_key(certs.signing_key)
    return issue_token(
        key, caller=f"test-{role.value}", role=role.value, merchant_id=merchant_id, ttl_seconds=ttl_seconds
    )


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class SecureCaller:
    """One caller: a TLS channel (with or without a client certificate) and per-call metadata."""

    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...] = ()
    engine: engine_pb2_grpc.TransactionEngineStub = field(init=False)
    admin: admin_pb2_grpc.AdminStub = field(init=False)

    def __post_init__(self) -> None:
        self.engine = engine_pb2_grpc.TransactionEngineStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def call(self, stub: Any, rpc: str, request: Any) -> Any:
        return getattr(stub, rpc)(request, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)

    def close(self) -> None:
        self.channel.close()


def _credentials(ca: bytes, client_pair: tuple[bytes, bytes] | None) -> grpc.ChannelCredentials:
    key, chain = client_pair if client_pair is not None else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)


def tls_channel(port: int, ca: bytes, client_pair: tuple[bytes, bytes] | None = None) -> grpc.Channel:
    return grpc.secure_channel(f"localhost:{port}", _credentials(ca, client_pair))


def wait_serving_tls(port: int, ca: bytes, client_pair: tuple[bytes, bytes] | None = None) -> None:
    wait_serving(f"localhost:{port}", credentials=_credentials(ca, client_pair))


class SecureEngine:
    """``python server.py`` over TLS on SQLite shards under ``data``, with ``mode`` callers.

    With mtls the engine also listens on a probe port (``COFFER_PROBE_LISTEN``: TLS, no client
    certificate asked), where health and reflection are open and every coffer RPC is refused."""

    def __init__(self, mode: AuthMode, certs: CertificateFiles, data: Path) -> None:
        self.mode = mode
        self.certs = certs
        data.mkdir(parents=True, exist_ok=True)
        environment = {
            "COFFER_AUTH": mode.value,
            "COFFER_SHARDS": ",".join(f"sqlite:///{data}/shard{index}.db" for index in range(2)),
            "COFFER_TLS_CERT": str(certs.directory / "server.pem"),
            "COFFER_TLS_KEY": str(certs.directory / "server.key"),
        }
        self.probe_port = 0
        if mode is AuthMode.MTLS:
            self.probe_port = free_port()
            environment["COFFER_TLS_CLIENT_CA"] = str(certs.directory / "ca.pem")
            environment["COFFER_PROBE_LISTEN"] = f"127.0.0.1:{self.probe_port}"
        else:
            environment["COFFER_TOKEN_KEYS"] = str(certs.directory / "token.keys")
        self.process = EngineProcess(environment, log_path=data / "engine.log", wait=False)
        self.port = self.process.port
        try:
            if mode is AuthMode.MTLS:
                wait_serving_tls(self.probe_port, certs.ca)
            else:
                wait_serving_tls(self.port, certs.ca)
        except TimeoutError:
            self.process.terminate()
            raise
        self._callers: list[SecureCaller] = []

    def _keep(self, caller: SecureCaller) -> SecureCaller:
        self._callers.append(caller)
        return caller

    def caller(self, role: Role, *, merchant_id: str | None = None) -> SecureCaller:
        """A caller with a valid credential for ``role`` (a pos one is bound to ``merchant_id``,
        by default the certificate's :data:`POS_MERCHANT_ID`; mtls has only that one)."""
        if self.mode is AuthMode.MTLS:
            if merchant_id not in (None, POS_MERCHANT_ID):
                raise ValueError("the development pos certificate is bound to m-pos-1 only")
            return self._keep(
                SecureCaller(tls_channel(self.port, self.certs.ca, self.certs.client_pair(role)))
            )
        token = mint_token(self.certs, role, merchant_id=merchant_id)
        return self._keep(SecureCaller(tls_channel(self.port, self.certs.ca), bearer(token)))

    def anonymous(self, *, port: int | None = None, metadata: Sequence[tuple[str, str]] = ()) -> SecureCaller:
        """TLS without any caller credential (or with the given, possibly bad, metadata)."""
        return self._keep(SecureCaller(tls_channel(port or self.port, self.certs.ca), tuple(metadata)))

    def with_certificate(self, pair: tuple[bytes, bytes], *, port: int | None = None) -> SecureCaller:
        return self._keep(SecureCaller(tls_channel(port or self.port, self.certs.ca, pair)))

    def stop(self) -> None:
        for caller in self._callers:
            caller.close()
        self.process.terminate()
