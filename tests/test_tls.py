"""TLS: ``realtalk dev-cert`` (its CA, the server certificate's names, key permissions), the
REALTALK_SSL_* settings and ``--ssl-*`` flags (clear one-line errors), and ``realtalk serve``
over https:// with a development certificate, as Python, httpx and Chromium clients see it."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from realtalk import cli
from realtalk.config import ConfigError, Settings, load_settings
from realtalk.devcert import DevCertError, DevCertificate, make_dev_certificate, spki_sha256
from tests.conftest import LiveServer, start_server, stop_server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def handshake(made: DevCertificate, server_hostname: str) -> None:
    """A TLS handshake in memory: a server with the certificate, a client that trusts only the
    CA and checks ``server_hostname``. Raises ssl.SSLCertVerificationError when it fails."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(made.cert, made.key)
    client_ctx = ssl.create_default_context(cafile=str(made.ca_cert))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    back_in, back_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(back_in, back_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        back_in.write(to_server.read())
        to_client.write(back_out.read())
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_dev_cert_files_names_and_permissions(tmp_path: Path) -> None:
    made = make_dev_certificate(tmp_path / "tls", ["my-laptop.lan", "192.168.1.5", "localhost"])
    assert made.ca_created
    assert made.names == ("localhost", "127.0.0.1", "::1", "my-laptop.lan", "192.168.1.5")
    for path in (made.ca_cert, made.ca_key, made.cert, made.key):
        assert path.parent == tmp_path / "tls" and path.is_file()
    assert mode(made.ca_key) == 0o600 and mode(made.key) == 0o600
    assert not mode(made.cert) & 0o022 and not mode(made.ca_cert) & 0o022
    assert sorted(p.name for p in made.folder.iterdir()) == [
        "ca-key.pem",
        "ca.pem",
        "cert.pem",
        "key.pem",
    ]

    ca, cert = load_cert(made.ca_cert), load_cert(made.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "my-laptop.lan"}
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("192.168.1.5"),
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - now <= datetime.timedelta(days=398)
    # The keys are unencrypted PEM and belong to their certificates.
    key = serialization.load_pem_private_key(made.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()
    assert made.spki_sha256 == spki_sha256(cert)

    # Signed by the CA, and valid for each name under a strict verifier (cryptography's,
    # which applies the CA/Browser Forum profile) and under OpenSSL (ssl).
    cert.verify_directly_issued_by(ca)
    verifier = PolicyBuilder().store(Store([ca]))
    for name in ("localhost", "my-laptop.lan"):
        verifier.build_server_verifier(x509.DNSName(name)).verify(cert, [])
    for address in ("127.0.0.1", "::1", "192.168.1.5"):
        ip = x509.IPAddress(ipaddress.ip_address(address))
        verifier.build_server_verifier(ip).verify(cert, [])
    with pytest.raises(VerificationError):
        verifier.build_server_verifier(x509.DNSName("example.com")).verify(cert, [])
    for name in ("localhost", "127.0.0.1", "::1", "my-laptop.lan", "192.168.1.5"):
        handshake(made, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(made, "example.com")


def test_dev_cert_keeps_its_ca(tmp_path: Path) -> None:
    """A second run signs a new server certificate with the CA already trusted."""
    first = make_dev_certificate(tmp_path)
    ca_pem = first.ca_cert.read_bytes()
    old_cert = first.cert.read_bytes()
    first.ca_key.chmod(0o644)  # loosened by hand: tightened again
    second = make_dev_certificate(tmp_path, ["box.test"])
    assert not second.ca_created
    assert second.ca_cert.read_bytes() == ca_pem
    assert second.cert.read_bytes() != old_cert
    assert mode(second.ca_key) == 0o600 and mode(second.key) == 0o600
    load_cert(second.cert).verify_directly_issued_by(load_cert(second.ca_cert))
    handshake(second, "box.test")


def test_dev_cert_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(DevCertError, match="not a host name"):
        make_dev_certificate(tmp_path / "a", ["not a host!"])
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "ca.pem").write_text("not a certificate")
    (broken / "ca-key.pem").write_text("not a key")
    with pytest.raises(DevCertError, match=r"remove ca\.pem and ca-key\.pem"):
        make_dev_certificate(broken)


def test_dev_cert_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A REALTALK_SSL_CERTFILE that does not exist yet does not stop dev-cert from making it.
    monkeypatch.setenv("REALTALK_SSL_CERTFILE", str(tmp_path / "later" / "cert.pem"))
    monkeypatch.setenv("REALTALK_DATA_DIR", str(tmp_path / "data"))
    assert cli.main(["dev-cert", "--host", "voice.test"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "data" / "tls"  # the default: <data dir>/tls
    cert = load_cert(folder / "cert.pem")
    assert "localhost, 127.0.0.1, ::1, voice.test" in out
    assert f"--ssl-certfile {folder / 'cert.pem'} --ssl-keyfile {folder / 'key.pem'}" in out
    assert f"NODE_EXTRA_CA_CERTS={folder / 'ca.pem'}" in out
    assert f"SSL_CERT_FILE={folder / 'ca.pem'}" in out
    assert f"--ignore-certificate-errors-spki-list={spki_sha256(cert)}" in out
    assert "BEGIN" not in out  # no key (or certificate) is printed

    assert cli.main(["dev-cert", "--dir", str(tmp_path / "d"), "--host", "bad name"]) == 2
    assert "'bad name' is not a host name" in capsys.readouterr().err


@pytest.fixture
def dev_cert(tmp_path: Path) -> DevCertificate:
    return make_dev_certificate(tmp_path / "tls")


def test_tls_settings_load(dev_cert: DevCertificate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTALK_SSL_CERTFILE", str(dev_cert.cert))
    monkeypatch.setenv("REALTALK_SSL_KEYFILE", str(dev_cert.key))
    settings = load_settings()
    assert (settings.ssl_certfile, settings.ssl_keyfile) == (dev_cert.cert, dev_cert.key)
    monkeypatch.setenv("REALTALK_SSL_CERTFILE", "")
    monkeypatch.setenv("REALTALK_SSL_KEYFILE", " ")
    settings = load_settings()  # empty: TLS off
    assert settings.ssl_certfile is None and settings.ssl_keyfile is None


def _encrypted_key(dev_cert: DevCertificate, path: Path) -> Path:
    key = serialization.load_pem_private_key(dev_cert.key.read_bytes(), password=None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


SETTINGS_ERRORS = [
    (
        "cert only",
        "invalid settings: REALTALK_SSL_CERTFILE (--ssl-certfile) is set but "
        "REALTALK_SSL_KEYFILE (--ssl-keyfile) is not",
    ),
    (
        "key only",
        "invalid settings: REALTALK_SSL_KEYFILE (--ssl-keyfile) is set but "
        "REALTALK_SSL_CERTFILE (--ssl-certfile) is not",
    ),
    ("missing cert", "invalid REALTALK_SSL_CERTFILE (--ssl-certfile): '{tmp}/nope.pem' does"),
    ("missing key", "invalid REALTALK_SSL_KEYFILE (--ssl-keyfile): '{tmp}/nope.pem' does"),
    ("a directory", "invalid REALTALK_SSL_CERTFILE (--ssl-certfile): '{tmp}' is a directory"),
    ("cert is a key", "holds no PEM certificate"),
    ("key is a cert", "holds no PEM private key"),
    ("the CA's cert", "the key is not this certificate's"),
    ("encrypted key", "the key is encrypted"),
]


@pytest.mark.parametrize(
    ("case", "expected"), SETTINGS_ERRORS, ids=[case for case, _ in SETTINGS_ERRORS]
)
def test_tls_settings_errors(
    dev_cert: DevCertificate, tmp_path: Path, case: str, expected: str
) -> None:
    cert, key = dev_cert.cert, dev_cert.key
    nope = tmp_path / "nope.pem"
    cases: dict[str, dict[str, Path | None]] = {
        "cert only": {"ssl_certfile": cert, "ssl_keyfile": None},
        "key only": {"ssl_certfile": None, "ssl_keyfile": key},
        "missing cert": {"ssl_certfile": nope, "ssl_keyfile": key},
        "missing key": {"ssl_certfile": cert, "ssl_keyfile": nope},
        "a directory": {"ssl_certfile": tmp_path, "ssl_keyfile": key},
        "cert is a key": {"ssl_certfile": key, "ssl_keyfile": key},
        "key is a cert": {"ssl_certfile": cert, "ssl_keyfile": cert},
        "the CA's cert": {"ssl_certfile": dev_cert.ca_cert, "ssl_keyfile": key},
        "encrypted key": {
            "ssl_certfile": cert,
            "ssl_keyfile": _encrypted_key(dev_cert, tmp_path / "enc.pem"),
        },
    }
    with pytest.raises(ConfigError) as info:
        load_settings(**cases[case])
    message = str(info.value)
    assert expected.format(tmp=tmp_path) in message
    assert "\n" not in message


def test_tls_settings_unreadable_file(
    dev_cert: DevCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = Path.open

    def open_(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == dev_cert.key:  # as for a file of another user (root reads any file)
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(ConfigError) as info:
        load_settings(ssl_certfile=dev_cert.cert, ssl_keyfile=dev_cert.key)
    assert str(info.value) == (
        f"invalid REALTALK_SSL_KEYFILE (--ssl-keyfile): cannot read '{dev_cert.key}': "
        "Permission denied"
    )


def test_serve_flags(
    dev_cert: DevCertificate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The flags win over the variables and are checked the same way, before anything starts."""
    started: list[Settings] = []

    def serve(settings: Settings, host: str | None, port: int | None) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(cli, "_serve", serve)
    monkeypatch.setenv("REALTALK_SSL_CERTFILE", str(tmp_path / "old-cert.pem"))  # missing
    monkeypatch.setenv("REALTALK_SSL_KEYFILE", str(dev_cert.key))
    flags = ["--ssl-certfile", str(dev_cert.cert)]
    assert cli.main(["serve", *flags]) == 0
    assert started[0].ssl_certfile == dev_cert.cert and started[0].ssl_keyfile == dev_cert.key

    monkeypatch.delenv("REALTALK_SSL_KEYFILE")
    assert cli.main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("realtalk: invalid settings: REALTALK_SSL_CERTFILE (--ssl-certfile)")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert len(started) == 1


# --- a live server over TLS ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    folder = tmp_path_factory.mktemp("tls-live")
    made = make_dev_certificate(folder / "tls")
    server = start_server(
        folder,
        "tls",
        ready=True,
        args=["--ssl-certfile", str(made.cert), "--ssl-keyfile", str(made.key)],
        ca_file=made.ca_cert,
    )
    yield server, made.cert
    stop_server(server)


@pytest.mark.live
@pytest.mark.models
def test_serve_over_tls(tls_engine: tuple[LiveServer, Path]) -> None:
    engine, _ = tls_engine
    assert engine.url.startswith("https://127.0.0.1:")
    trusted = engine.verify()
    health = httpx.get(f"{engine.url}/healthz", verify=trusted)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    # Without the development CA the certificate is refused, and nothing is served in clear.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{engine.url}/healthz")
    with pytest.raises(httpx.HTTPError):
        httpx.get(engine.url.replace("https://", "http://") + "/healthz")
    # The server says where it is with https://.
    assert f"Uvicorn running on {engine.url}" in engine.log_text()
    # The page is told an https:// engine URL (the request's scheme).
    session = httpx.post(f"{engine.url}/api/realtime/session", json={}, verify=trusted)
    assert session.status_code == 200, session.text
    assert session.json()["engine"]["base_url"] == f"{engine.url}/v1"


@pytest.mark.live
@pytest.mark.models
async def test_openai_python_over_tls(tls_engine: tuple[LiveServer, Path]) -> None:
    """What dev-cert prints for the openai Python client works: an ssl context for its HTTP
    client and for its realtime WebSocket."""
    import openai

    engine, _ = tls_engine
    assert engine.ca_file is not None
    ctx = ssl.create_default_context(cafile=str(engine.ca_file))
    async with openai.DefaultAsyncHttpxClient(verify=ctx) as http:
        client = openai.AsyncOpenAI(
            api_key=engine.api_key, base_url=f"{engine.url}/v1", http_client=http
        )
        secret = await client.realtime.client_secrets.create(session={"type": "realtime"})
        assert secret.value.startswith("ek_")
        # Passed on to websockets' connect(), which takes `ssl` (the TypedDict omits it).
        options: Any = {"ssl": ctx}
        async with client.realtime.connect(
            model="gpt-realtime", websocket_connection_options=options
        ) as connection:
            event = await connection.recv()
            assert event.type == "session.created"


@pytest.mark.live
@pytest.mark.models
def test_ssl_cert_file_over_tls(tls_engine: tuple[LiveServer, Path]) -> None:
    """SSL_CERT_FILE makes a whole Python process trust the CA: the openai client's HTTP
    (httpx2) and its realtime WebSocket (websockets, through ssl's default context)."""
    engine, _ = tls_engine
    assert engine.ca_file is not None
    script = """
import asyncio, sys, openai
async def main():
    client = openai.AsyncOpenAI(api_key=sys.argv[2], base_url=sys.argv[1])
    secret = await client.realtime.client_secrets.create(session={"type": "realtime"})
    async with client.realtime.connect(model="gpt-realtime") as connection:
        event = await connection.recv()
    print(secret.value[:3], event.type)
asyncio.run(main())
"""
    env = {**os.environ, "SSL_CERT_FILE": str(engine.ca_file)}
    command = [sys.executable, "-c", script, f"{engine.url}/v1", engine.api_key]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.split() == ["ek_", "session.created"], result.stderr[-3000:]
    env.pop("SSL_CERT_FILE")
    refused = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


@pytest.mark.live
@pytest.mark.models
@pytest.mark.browser
def test_chromium_with_the_spki_flag(tls_engine: tuple[LiveServer, Path]) -> None:
    """Chromium refuses the certificate, and takes it with the flag dev-cert prints."""
    from playwright.sync_api import Error, sync_playwright

    from tests.test_browser import CHROMIUM, FLAGS

    engine, cert_path = tls_engine
    pin = spki_sha256(load_cert(cert_path))
    with sync_playwright() as playwright:
        flag = f"--ignore-certificate-errors-spki-list={pin}"
        for args, trusted in (([], False), ([flag], True)):
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=[*FLAGS, *args]
            )
            try:
                page = browser.new_page()
                if trusted:
                    response = page.goto(f"{engine.url}/healthz")
                    assert response is not None and response.status == 200
                    assert page.evaluate("window.isSecureContext")
                    assert '"status":"ok"' in page.content()
                else:
                    with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                        page.goto(f"{engine.url}/healthz")
            finally:
                browser.close()
