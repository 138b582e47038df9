"""Write a development CA, the server's certificate, one client certificate per role and the
caller-token keys (docs/security.md). Uses the ``cryptography`` package; no openssl.

Run: ``make certs`` (into ``var/certs/``) or ``python scripts/make_certs.py --out DIR``.

Files: ``ca.pem`` (+ ``ca.key``); ``server.pem`` + ``server.key`` (SAN localhost, 127.0.0.1, ::1);
``<role>.pem`` + ``<role>.key`` per role — subject CN = the caller, OU = the role; the ``pos``
certificate also carries the SAN URI ``coffer:merchant:m-pos-1``; ``token-signing.key`` (Ed25519,
what ``python -m engine.tokens issue`` signs with by default) and ``token.keys`` (its public key:
the file to give ``COFFER_TOKEN_KEYS``). Private keys are written mode 0600.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.security.identity import Role, merchant_uri

DEFAULT_DIRECTORY = Path("var/certs")
#: The merchant the development ``pos`` certificate is bound to.
POS_MERCHANT_ID = "m-pos-1"
VALIDITY_DAYS = 365
#: Issued this long before now, so a client or server clock slightly behind still accepts them.
BACKDATE = datetime.timedelta(minutes=5)
SIGNING_KEY_FILE = "token-signing.key"
TOKEN_KEYS_FILE = "token.keys"

PrivateKey = ec.EllipticCurvePrivateKey


def _new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: PrivateKey | ed25519.Ed25519PrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def caller_name(role: Role) -> str:
    """The development certificate's CN for ``role`` (the caller name the audit trail will show)."""
    return f"dev-{role.value.replace('_', '-')}"


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(common_name: str) -> tuple[x509.Certificate, PrivateKey]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _leaf(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    subject: x509.Name,
    names: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
) -> tuple[x509.Certificate, PrivateKey]:
    key = _new_key()
    builder = (
        _builder(subject, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_server(ca: x509.Certificate, ca_key: PrivateKey) -> tuple[x509.Certificate, PrivateKey]:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    return _leaf(ca, ca_key, subject, names, ExtendedKeyUsageOID.SERVER_AUTH)


def make_client(
    ca: x509.Certificate, ca_key: PrivateKey, role: Role, *, caller: str, merchant_id: str | None = None
) -> tuple[x509.Certificate, PrivateKey]:
    """A client certificate: CN = caller, OU = role, and a merchant-binding SAN URI when given."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, caller),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        ]
    )
    names: list[x509.GeneralName] = (
        [x509.UniformResourceIdentifier(merchant_uri(merchant_id))] if merchant_id else []
    )
    return _leaf(ca, ca_key, subject, names, ExtendedKeyUsageOID.CLIENT_AUTH)


def write_token_keys(directory: Path) -> None:
    signing_key = ed25519.Ed25519PrivateKey.generate()
    _write_key(directory / SIGNING_KEY_FILE, signing_key)
    public = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / TOKEN_KEYS_FILE).write_bytes(public)


def write_all(directory: Path, *, ca_name: str = "coffer development CA") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca(ca_name)
    _write_cert(directory / "ca.pem", ca)
    _write_key(directory / "ca.key", ca_key)
    server, server_key = make_server(ca, ca_key)
    _write_cert(directory / "server.pem", server)
    _write_key(directory / "server.key", server_key)
    for role in Role:
        merchant_id = POS_MERCHANT_ID if role is Role.POS else None
        certificate, key = make_client(ca, ca_key, role, caller=caller_name(role), merchant_id=merchant_id)
        _write_cert(directory / f"{role.value}.pem", certificate)
        _write_key(directory / f"{role.value}.key", key)
    write_token_keys(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIRECTORY, help="directory (default var/certs)")
    parser.add_argument("--ca-name", default="coffer development CA", help="the CA's common name")
    arguments = parser.parse_args(argv)
    write_all(arguments.out, ca_name=arguments.ca_name)
    print(f"wrote the CA, server, {len(Role)} role certificates and the token keys under {arguments.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
