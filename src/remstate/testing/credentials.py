"""What a client needs to talk to a test control plane: certificates, tokens, a kubeconfig.

All are made fresh for each start. TLS verification stays on in the tests: we
make our own CA and serving certificate, and every client verifies the API
server against that CA. The service-account key pair lets TokenRequest and
TokenReview work. Users authenticate with static bearer tokens.

``cryptography`` is imported where it is used: the pytest plugin imports this
module in every session, and ``cryptography`` comes with the ``testing`` extra.
"""

from __future__ import annotations

import csv
import datetime
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

#: When a certificate starts and stops being valid.
Lifetime = tuple[datetime.datetime, datetime.datetime]

__all__ = ["SERVICE_IP", "context_name", "write_kubeconfig", "write_pki", "write_tokens"]

#: The first address of the service CIDR: the ``kubernetes`` Service's ClusterIP.
SERVICE_IP = "10.0.0.1"


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca(lifetime: Lifetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA: its key and certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    # EC keys: far cheaper to generate than RSA on a busy machine.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "remstate-test-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0])
        .not_valid_after(lifetime[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _serving(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, lifetime: Lifetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The API server's key and certificate, signed by the CA, for every name it is reached by."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    names = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(SERVICE_IP)),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(lifetime[0])
        .not_valid_after(lifetime[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pki(directory: Path) -> tuple[Path, Path, Path, Path, Path]:
    """Write a CA, a serving certificate signed by it, and the service-account key pair.

    Returns the paths of: CA certificate, serving certificate, serving key,
    service-account private key, service-account public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = datetime.datetime.now(datetime.UTC)
    lifetime = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30))
    ca_key, ca_cert = _ca(lifetime)
    serving_key, serving_cert = _serving(ca_key, ca_cert, lifetime)
    # The service-account signing key: RSA, the algorithm every consumer accepts.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    paths = (
        directory / "ca.crt",
        directory / "apiserver.crt",
        directory / "apiserver.key",
        directory / "sa.key",
        directory / "sa.pub",
    )
    contents = (
        ca_cert.public_bytes(serialization.Encoding.PEM),
        serving_cert.public_bytes(serialization.Encoding.PEM),
        pem_key(serving_key),
        pem_key(sa_key),
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    for path, content in zip(paths, contents, strict=True):
        path.write_bytes(content)
        path.chmod(0o600)
    return paths


def write_tokens(path: Path, tokens: Mapping[str, str]) -> None:
    """The API server's ``--token-auth-file``: ``admin`` in ``system:masters``, others bare."""
    with path.open("w", newline="") as f:
        rows = csv.writer(f)
        # token,user,uid,"group1,group2"
        for user, token in tokens.items():
            groups = ["system:masters"] if user == "admin" else []
            rows.writerow([token, user, user, *groups])
    path.chmod(0o600)


def context_name(user: str) -> str:
    """The kubeconfig context of a user: ``remstate-test`` for the admin."""
    return "remstate-test" if user == "admin" else f"remstate-test-{user}"


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path,
    tokens: Mapping[str, str],
    namespace: str = "default",
    user: str = "admin",
) -> Path:
    """A kubeconfig with a context per user, all in ``namespace``; ``user``'s is current."""
    # JSON is YAML: every kubeconfig reader takes it, and we need no YAML writer.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "remstate-test",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": name, "user": {"token": token}} for name, token in tokens.items()],
        "contexts": [
            {
                "name": context_name(name),
                "context": {"cluster": "remstate-test", "user": name, "namespace": namespace},
            }
            for name in tokens
        ],
        "current-context": context_name(user),
        "preferences": {},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
    return path
