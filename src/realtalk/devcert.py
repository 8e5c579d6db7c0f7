"""``realtalk dev-cert``: a local certificate authority and a TLS certificate for development.

Clients that insist on ``https:`` / ``wss:`` (the ``openai`` npm package's realtime WebSocket
clients always dial ``wss:``; browsers give a microphone only to a secure context off
localhost) then work against ``realtalk serve --ssl-certfile … --ssl-keyfile …`` by changing
only their URL and trusting the CA. In production a reverse proxy terminates TLS instead
(docs/deployment.md).

The folder holds ``ca.pem`` / ``ca-key.pem`` (the CA, kept across runs so it is trusted once)
and ``cert.pem`` / ``key.pem`` (the server's, made anew each run, signed by the CA). Keys are
EC P-256, written with mode 0600 and never printed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 397
"""Under the 398 days that Apple's and browsers' checks allow a server certificate."""
CLOCK_SKEW = datetime.timedelta(hours=1)
"""Certificates start this long in the past, so a client whose clock lags accepts them."""

Name = x509.DNSName | x509.IPAddress


@dataclass(frozen=True)
class DevCertificate:
    """The files ``realtalk dev-cert`` wrote, and what a client needs to trust them."""

    folder: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    names: tuple[str, ...]
    """The server certificate's subject alternative names, as given."""
    ca_created: bool
    """False when an existing CA in the folder signed the new certificate."""
    spki_sha256: str
    """Base64 SHA-256 of the server key's SubjectPublicKeyInfo: Chromium's
    ``--ignore-certificate-errors-spki-list`` value."""


class DevCertError(Exception):
    """The folder cannot hold the certificate (unreadable CA, a name that is not a host)."""


def _name(text: str) -> Name:
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    host = text.strip().rstrip(".").lower()
    labels = host.removeprefix("*.").split(".")
    if not host or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    ):
        raise DevCertError(f"{text!r} is not a host name or an IP address")
    return x509.DNSName(host)


def server_names(extra: Iterable[str] = ()) -> list[str]:
    """localhost, 127.0.0.1 and ::1, then ``extra`` (duplicates dropped, order kept)."""
    names: list[str] = []
    for text in (*DEFAULT_NAMES, *extra):
        value = _name(text).value
        shown = str(value)
        if shown not in names:
            names.append(shown)
    return names


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start (also over an existing file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "realtalk development CA"),
            x509.NameAttribute(
                NameOID.COMMON_NAME, f"realtalk development CA on {socket.gethostname()}"[:64]
            ),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise DevCertError(
            f"cannot reuse the CA in {cert_path.parent} ({exc}); remove ca.pem and ca-key.pem "
            "there to make a new one (clients must then trust the new CA)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise DevCertError(f"{key_path} is not the key of {cert_path}")
    return cert, key


def _server_cert(
    names: Sequence[str],
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "realtalk development"),
                    x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(
            min(now + datetime.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc)
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_name(n) for n in names]),
            # Critical when the subject is empty (RFC 5280); ours has a CN, so not critical.
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def spki_sha256(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of ``cert``'s SubjectPublicKeyInfo (Chromium's SPKI pin format)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def make_dev_certificate(folder: Path, extra_names: Iterable[str] = ()) -> DevCertificate:
    """Write a server certificate for localhost, 127.0.0.1, ::1 and ``extra_names`` into
    ``folder``, signed by the folder's CA (made first if the folder has none)."""
    names = server_names(extra_names)
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = folder / "ca.pem", folder / "ca-key.pem"
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    now = datetime.datetime.now(datetime.UTC)
    created = not (ca_cert_path.exists() and ca_key_path.exists())
    if created:
        ca_cert, ca_key = _new_ca(now)
        _write_private(ca_key_path, _pem_key(ca_key))
        _write_public(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
        ca_key_path.chmod(0o600)
    cert, key = _server_cert(names, ca_cert, ca_key, now)
    _write_private(key_path, _pem_key(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return DevCertificate(
        folder=folder,
        ca_cert=ca_cert_path,
        ca_key=ca_key_path,
        cert=cert_path,
        key=key_path,
        names=tuple(names),
        ca_created=created,
        spki_sha256=spki_sha256(cert),
    )


def how_to_use(made: DevCertificate) -> str:
    """What ``realtalk dev-cert`` prints: the files, how to serve with them, how to trust."""
    ca, cert, key = made.ca_cert, made.cert, made.key
    ca_line = (
        "a new CA (trust it once; it signs later certificates from this folder too)"
        if made.ca_created
        else "the folder's existing CA (clients that trust it already need nothing new)"
    )
    return f"""\
Development TLS certificate for {", ".join(made.names)}, signed by {ca_line}.

  CA certificate      {ca}
  CA key (0600)       {made.ca_key}   keep it private: it can sign for any host name
  server certificate  {cert}   valid {SERVER_DAYS} days
  server key (0600)   {key}

Serve over https:// and wss://:
  realtalk serve --ssl-certfile {cert} --ssl-keyfile {key}
  (or REALTALK_SSL_CERTFILE={cert} REALTALK_SSL_KEYFILE={key})
then point clients at https://127.0.0.1:8000/v1 (the page: https://127.0.0.1:8000/).

Trust the CA in clients:
  Node (openai, @openai/agents):  NODE_EXTRA_CA_CERTS={ca} node app.mjs
  Python (openai, httpx, websockets):  SSL_CERT_FILE={ca} python app.py
    (it replaces the system's CA list for that process), or in code:
    ctx = ssl.create_default_context(cafile="{ca}")
    http = openai.DefaultAsyncHttpxClient(verify=ctx)
    client = openai.AsyncOpenAI(base_url="https://127.0.0.1:8000/v1", http_client=http)
    client.realtime.connect(..., websocket_connection_options={{"ssl": ctx}})
  Chromium, this server certificate only (the pin changes with each dev-cert run):
    chromium --user-data-dir=/tmp/rt-profile \\
      --ignore-certificate-errors-spki-list={made.spki_sha256}
  Chromium or Firefox on Linux, the CA for the user (NSS store; libnss3-tools):
    certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n "realtalk development CA" -i {ca}
  System-wide on Debian/Ubuntu (curl, most tools):
    sudo cp {ca} /usr/local/share/ca-certificates/realtalk-dev-ca.crt && sudo update-ca-certificates
"""
