"""A caller from a client certificate the TLS handshake has verified (``COFFER_AUTH=mtls``).

The subject's CN is the caller, its OU the role (:class:`~engine.security.identity.Role`); a till's
certificate names its merchant in one subjectAltName URI ``coffer:merchant:<merchant_id>``.
Chain, validity period and key possession are checked by the handshake against
``COFFER_TLS_CLIENT_CA``; this module only reads the verified certificate.
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.x509.oid import NameOID

from engine.security.identity import Caller, merchant_from_uri, role_named, unauthenticated

__all__ = ["MAX_CERTIFICATE_BYTES", "caller_from_certificate"]

MAX_CERTIFICATE_BYTES = 16 * 1024
#: Distinct client certificates whose parse is remembered (a connection reuses its certificate).
PARSED_CACHE_SIZE = 1024


def _one_attribute(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise unauthenticated(f"the client certificate must carry exactly one {label}")
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _merchant(certificate: x509.Certificate) -> str | None:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    merchants = [
        merchant
        for merchant in (
            merchant_from_uri(uri) for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
        )
        if merchant is not None
    ]
    if len(merchants) > 1:
        raise unauthenticated("the client certificate names more than one merchant")
    return merchants[0] if merchants else None


@functools.lru_cache(maxsize=PARSED_CACHE_SIZE)
def caller_from_certificate(pem: bytes) -> Caller:
    """The caller a verified PEM client certificate names; UNAUTHENTICATED when it names none."""
    if not pem or len(pem) > MAX_CERTIFICATE_BYTES:
        raise unauthenticated("no client certificate")
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise unauthenticated("the client certificate cannot be read") from None
    subject = certificate.subject
    return Caller(
        name=_one_attribute(subject, NameOID.COMMON_NAME, "CN (the caller)"),
        role=role_named(_one_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (the role)")),
        merchant_id=_merchant(certificate),
    )
