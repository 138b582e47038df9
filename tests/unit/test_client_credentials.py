"""The client side of the security issue's credentials: a TLS channel from PEM files and a bearer
token on every call. The engine does not check them yet, so this checks what the client builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from clients import TlsFiles
from clients import _transport as transport
from clients._cli import EXIT_USAGE
from clients.admin.cli import build_parser
from clients.order_client import OrderClient


def _pem(path: Path, text: str) -> Path:
    path.write_text(f"-----BEGIN {text}-----\nAAAA\n-----END {text}-----\n")
    return path


def test_tls_files_build_ssl_credentials_and_a_secure_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    real_secure_channel = grpc.secure_channel

    def fake_credentials(**files: bytes | None) -> grpc.ChannelCredentials:
        seen["files"] = files
        return grpc.local_channel_credentials()

    def fake_secure_channel(target: str, credentials: grpc.ChannelCredentials, **kwargs: Any) -> grpc.Channel:
        seen.setdefault("secure", []).append(target)
        return real_secure_channel(target, credentials, **kwargs)

    monkeypatch.setattr(grpc, "ssl_channel_credentials", fake_credentials)
    monkeypatch.setattr(grpc, "secure_channel", fake_secure_channel)
    files = TlsFiles(
        _pem(tmp_path / "ca.pem", "CA"), _pem(tmp_path / "c.pem", "CERT"), _pem(tmp_path / "k.pem", "KEY")
    )
    with OrderClient("coffer.internal:443", tls=files, connections=2) as client:
        assert client.secure
    assert seen["secure"] == ["coffer.internal:443", "coffer.internal:443"]
    assert seen["files"] == {
        "root_certificates": files.ca.read_bytes(),
        "private_key": (tmp_path / "k.pem").read_bytes(),
        "certificate_chain": (tmp_path / "c.pem").read_bytes(),
    }


def test_server_only_tls_and_plaintext() -> None:
    with OrderClient("127.0.0.1:1") as plain:
        assert not plain.secure and plain.metadata == ()
    with pytest.raises(ValueError, match="both or neither"):
        TlsFiles(Path("ca.pem"), cert=Path("c.pem"))
    with pytest.raises(OSError):
        OrderClient("127.0.0.1:1", tls=TlsFiles(Path("/nonexistent/ca.pem")))


def test_token_rides_every_call_as_bearer_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    with OrderClient("127.0.0.1:1", token="s3cret", metadata=[("x-request-id", "r1")]) as client:
        assert client.metadata == (("x-request-id", "r1"), ("authorization", "Bearer s3cret"))
        sent: dict[str, Any] = {}

        def method(request: Any, *, timeout: float, metadata: Any) -> str:
            sent["metadata"] = metadata
            return "answer"

        monkeypatch.setattr(client, "_stub_method", lambda rpc: method)
        assert client.get_wallet(1) == "answer"
        assert ("authorization", "Bearer s3cret") in sent["metadata"]
    with pytest.raises(ValueError, match="token"):
        transport.bearer_metadata("two words")


def test_cli_credential_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COFFER_TOKEN", "from-env")
    monkeypatch.setenv("COFFER_TARGET", "10.0.0.5:50051")
    args = build_parser().parse_args(["--ca", "ca.pem", "--cert", "c.pem", "--key-file", "k.pem", "health"])
    assert (args.ca, args.cert, args.key_file) == (Path("ca.pem"), Path("c.pem"), Path("k.pem"))
    assert args.token == "from-env" and args.target == "10.0.0.5:50051"
    assert EXIT_USAGE == 2
