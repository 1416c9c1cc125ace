"""A self-signed certificate for serving the emulator over TLS on loopback.

The certificate is its own CA (so a client trusts it by passing its PEM as
`root_certificates`) and names localhost and 127.0.0.1. EC P-256: made in milliseconds.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Certificate", "load_pair", "make_certificate"]


class Certificate(NamedTuple):
    cert_pem: bytes  # what clients trust (root_certificates)
    key_pem: bytes  # the private key: stays with the server

    def __repr__(self) -> str:
        return "Certificate(cert_pem=..., key_pem='***')"


def make_certificate(
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"), days: int = 30
) -> Certificate:
    """A self-signed CA certificate valid for `hosts` (names or IP addresses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sdm-async emulator")])
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # a little clock skew
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Certificate(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def load_pair(cert_pem: bytes, key_pem: bytes) -> Certificate:
    """Check that `cert_pem` and `key_pem` are a PEM certificate and its private key;
    ValueError saying which is wrong otherwise (the key's contents never shown)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValueError("the TLS certificate is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(
            "the TLS key is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)"
        ) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ValueError("the TLS key does not belong to the TLS certificate")
    return Certificate(cert_pem, key_pem)
