"""The deployment guide's nginx config (deploy/nginx/realtalk.conf), run in front of two live
instances: HTTPS, key minting, a WebSocket session with a text turn, WebRTC signalling (GA and
beta) with its Location, the forwarded client address, body limits and a failed instance.

nginx runs as an ordinary process (`nginx -p <tmp> -c <conf>`, no daemon, no root paths) on
free loopback ports; the shipped file is used as is except for the lines marked EDIT, which
the test fills in (and checks that each is still there, so the file cannot drift untested).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.rtc_client import RtcClient

pytestmark = [pytest.mark.live, pytest.mark.models]

CONF = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "realtalk.conf"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
API_KEY = "rt_deploy_shared_key_0123456789abcdef"
"""Every instance behind one proxy shares the standard key."""


@dataclass
class Proxied:
    url: str
    """The proxy's public address, https://127.0.0.1:<port>."""
    http_url: str
    ssl: ssl.SSLContext
    instances: list[LiveServer]
    access_log: Path
    process: subprocess.Popen[bytes]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.ssl, timeout=60)

    def log_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a small CA-less test PKI."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def render(text: str, edits: dict[str, str]) -> str:
    """The shipped config with each EDIT line replaced; every pattern must match once."""
    for pattern, replacement in edits.items():
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"{CONF.name}: expected one line matching {pattern!r}, found {count}"
    return text


def start_nginx(prefix: Path, instances: list[LiveServer]) -> Proxied:
    https_port, http_port = free_port(), free_port()
    cert, key = self_signed(prefix)
    access_log = prefix / "access.log"
    ports = [server.url.rsplit(":", 1)[1] for server in instances]
    site = render(
        CONF.read_text(),
        {
            r"^\s*server 10\.0\.0\.11:8000 (.*)$": rf"    server 127.0.0.1:{ports[0]} \1",
            r"^\s*server 10\.0\.0\.12:8000 (.*)$": rf"    server 127.0.0.1:{ports[1]} \1",
            r"^\s*listen 80;$": f"    listen 127.0.0.1:{http_port};",
            r"^\s*listen 443 ssl;$": f"    listen 127.0.0.1:{https_port} ssl;",
            r"^\s*ssl_certificate /etc/.*$": f"    ssl_certificate {cert};",
            r"^\s*ssl_certificate_key /etc/.*$": f"    ssl_certificate_key {key};",
            r"^\s*access_log /var/log/nginx/realtalk\.access\.log realtalk;$": (
                f"    access_log {access_log} realtalk;"
            ),
        },
    )
    (prefix / "realtalk.conf").write_text(site)
    # The main context a distribution's nginx.conf would give, with every path in the prefix
    # (the Debian binary's compiled-in temp paths are under /var/lib/nginx).
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        f"{user}\nworker_processes 1;\nerror_log {prefix / 'error.log'} info;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n{temp}\n    include {prefix / 'realtalk.conf'};\n}}\n"
    )
    assert NGINX
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "error.log"),
            "-g",
            f"daemon off; pid {prefix / 'nginx.pid'};",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited:\n{(prefix / 'error.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    context = ssl.create_default_context(cafile=str(cert))
    return Proxied(
        f"https://127.0.0.1:{https_port}",
        f"http://127.0.0.1:{http_port}",
        context,
        instances,
        access_log,
        process,
    )


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    if NGINX is None:
        pytest.skip("nginx is not installed (make test installs it)")
    folder = tmp_path_factory.mktemp("deploy")
    env = {
        "REALTALK_API_KEY": API_KEY,
        "REALTALK_TRUSTED_PROXIES": "127.0.0.1",
        "REALTALK_MINT_RATE_LIMIT": "2/minute",
        "REALTALK_MAX_SESSIONS": "2",
    }
    instances: list[LiveServer] = []
    proxy: Proxied | None = None
    try:
        for name in ("a", "b"):
            instances.append(start_server(folder, name, env=env, ready=True))
        prefix = folder / "nginx"
        prefix.mkdir()
        proxy = start_nginx(prefix, instances)
        yield proxy
    finally:
        if proxy is not None:
            proxy.process.terminate()
            proxy.process.wait(timeout=15)
        for server in instances:
            stop_server(server)


def standard() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def served_by(proxy: Proxied, method: str, path: str) -> list[str]:
    """The upstream address of each logged request for ``method path``."""
    pattern = re.compile(rf'upstream=(.+?) \[.*"{method} {re.escape(path)}"')
    return [m.group(1) for line in proxy.log_lines() if (m := pattern.search(line))]


async def test_health_and_plain_http_redirect(proxied: Proxied) -> None:
    async with proxied.client() as http:
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        page = await http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        metrics = await http.get("/metrics")
        assert metrics.status_code == 404  # scraped per instance, not through the proxy
    async with httpx.AsyncClient() as plain:
        moved = await plain.get(f"{proxied.http_url}/healthz")
    assert moved.status_code == 301 and moved.headers["location"].startswith("https://")


async def test_websocket_session_with_a_text_turn(proxied: Proxied) -> None:
    async with proxied.client() as http:
        minted = await http.post(
            "/v1/realtime/client_secrets",
            headers=standard(),
            json={"session": {"type": "realtime", "instructions": "Answer in a few words."}},
        )
    assert minted.status_code == 200, minted.text
    key = minted.json()["value"]
    url = proxied.url.replace("https://", "wss://") + "/v1/realtime?model=realtalk-local"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {key}"}, ssl=proxied.ssl
    ) as ws:
        created = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert created["type"] == "session.created"
        assert created["session"]["instructions"] == "Answer in a few words."
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "Say hello."}],
                    },
                }
            )
        )
        await ws.send(
            json.dumps(
                {
                    "type": "response.create",
                    "response": {"output_modalities": ["text"], "max_output_tokens": 16},
                }
            )
        )
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(120):
            while not events or events[-1]["type"] != "response.done":
                events.append(json.loads(await ws.recv()))
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, events
    done = events[-1]["response"]
    assert done["status"] in ("completed", "incomplete"), done  # incomplete: the token cap
    assert "response.output_text.delta" in kinds
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert served_by(proxied, "GET", "/v1/realtime")


async def test_webrtc_signalling_through_the_proxy(proxied: Proxied) -> None:
    async with proxied.client() as http:
        key = (
            await http.post(
                "/v1/realtime/client_secrets",
                headers=standard(),
                json={"session": {"type": "realtime"}},
            )
        ).json()["value"]
        client = RtcClient()
        try:
            answer = await http.post(
                "/v1/realtime/calls",
                content=await client.offer(),
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
            )
            assert answer.status_code == 201, answer.text
            assert answer.headers["content-type"].startswith("application/sdp")
            location = answer.headers["location"]
            assert location.startswith("/v1/realtime/calls/rtc_")  # relative, as sent
            # ICE, DTLS and the events channel go straight to the instance, not via nginx.
            await client.accept(answer.text)
            assert (await client.until("session.created", 30))[-1]["type"] == "session.created"
            hangup = await http.post(f"{location}/hangup", headers=standard())
            assert hangup.status_code == 200
        finally:
            await client.close()

        # Beta: the SDP POST shares /v1/realtime with the WebSocket upgrade.
        beta_key = (await http.post("/v1/realtime/sessions", headers=standard(), json={})).json()[
            "client_secret"
        ]["value"]
        beta = RtcClient()
        try:
            answer = await http.post(
                "/v1/realtime?model=gpt-4o-realtime-preview",
                content=await beta.offer(),
                headers={"Authorization": f"Bearer {beta_key}", "Content-Type": "application/sdp"},
            )
            assert answer.status_code == 201, answer.text
            assert answer.headers["location"].startswith("/v1/realtime/calls/rtc_")
            await beta.accept(answer.text)
            assert (await beta.until("session.created", 30))[-1]["type"] == "session.created"
        finally:
            await beta.close()

        # A body over the proxy's limit is refused by nginx in OpenAI's shape.
        too_big = await http.post(
            "/v1/realtime/calls",
            content=b"v=0\r\n" + b"a" * (2 * 1024 * 1024),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "request_too_large"
        # Every call ended: no session is left on either instance.
        for _ in range(100):
            counts = [
                (await http.get(f"{s.url}/healthz")).json()["sessions"] for s in proxied.instances
            ]
            if counts == [0, 0]:
                break
            await asyncio.sleep(0.1)
        assert counts == [0, 0]


async def test_client_address_is_forwarded(proxied: Proxied) -> None:
    # The test client plays an outer hop on 127.0.0.1 (a trusted proxy): realtalk counts the
    # mint rate limit (2/minute) per forwarded client, and its access log names them.
    async def mint(http: httpx.AsyncClient, client_ip: str) -> httpx.Response:
        return await http.post("/api/realtime/session", headers={"X-Forwarded-For": client_ip})

    async with proxied.client() as http:
        first = [await mint(http, "198.51.100.1") for _ in range(3)]
        other = await mint(http, "198.51.100.2")
    assert [r.status_code for r in first] == [200, 200, 429]
    assert other.status_code == 200
    # Host and X-Forwarded-Proto arrive too: the page is sent to the proxy's HTTPS address.
    assert first[0].json()["engine"]["base_url"] == f"{proxied.url}/v1"
    logs = "".join(server.log_text() for server in proxied.instances)
    assert '198.51.100.1:0 - "POST /api/realtime/session HTTP/1.1" 429' in logs
    assert '198.51.100.2:0 - "POST /api/realtime/session HTTP/1.1" 200' in logs
    assert any('xff="198.51.100.2"' in line for line in proxied.log_lines())


async def test_a_full_instance_passes_new_sessions_on(proxied: Proxied) -> None:
    # Both sessions land on the instance ip_hash picks; at its cap (2) it refuses the third
    # upgrade with 503 and nginx opens it on the other instance instead.
    url = proxied.url.replace("https://", "wss://") + "/v1/realtime?model=realtalk-local"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            ws = await stack.enter_async_context(
                websockets.connect(url, additional_headers=headers, ssl=proxied.ssl)
            )
            created = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert created["type"] == "session.created"
        async with proxied.client() as http:
            counts = [
                (await http.get(f"{s.url}/healthz")).json()["sessions"] for s in proxied.instances
            ]
    assert sorted(counts) == [1, 2]


async def test_a_stopped_instance_is_routed_around(proxied: Proxied) -> None:
    # Runs last: it stops the instances. ip_hash sent this client to one of them so far.
    used = set(served_by(proxied, "GET", "/healthz"))
    assert len(used) == 1, used
    address = used.pop()
    serving = next(s for s in proxied.instances if s.url == f"http://{address}")
    other = next(s for s in proxied.instances if s is not serving)
    stop_server(serving)
    async with proxied.client() as http:
        health = await http.get("/healthz")
        assert health.status_code == 200
        # The other instance answered (after nginx found the stopped one refusing).
        assert served_by(proxied, "GET", "/healthz")[-1].endswith(other.url[len("http://") :])
        for server in proxied.instances:
            stop_server(server)
        down = await http.get("/healthz")
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "upstream_unavailable"
    assert down.headers["retry-after"] == "5"
