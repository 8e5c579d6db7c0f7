"""``realtalk serve``, ``realtalk models`` and ``realtalk dev-cert``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from realtalk.config import ConfigError, Settings, ensure_api_key, load_settings, mask_secret
from realtalk.logs import use_json_logs
from realtalk.pipeline import weights


def _default_model_ids(settings: Settings) -> list[str]:
    chosen = [
        "silero-vad",
        "" if settings.stt_base_url else settings.stt_model,  # remote stages need no weights
        settings.end_of_turn_model,
        "" if settings.llm_base_url else settings.llm_model,
        "" if settings.tts_base_url else settings.tts_voice,
    ]
    return [spec.id for spec in (weights.lookup(c) for c in chosen) if spec is not None]


def _models(settings: Settings, action: str, ids: list[str]) -> int:
    if action == "list" and not ids:
        specs = list(weights.CATALOG.values())
    else:
        wanted = ids or _default_model_ids(settings)
        specs = []
        for model_id in wanted:
            spec = weights.lookup(model_id)
            if spec is None:
                print(
                    f"unknown model {model_id!r}; known: {', '.join(weights.CATALOG)}",
                    file=sys.stderr,
                )
                return 2
            specs.append(spec)
    defaults = set(_default_model_ids(settings))
    failed = False
    for spec in specs:
        if action == "prepare":
            try:
                before = weights.status(settings.model_dir, spec).state
                folder = weights.prepare(settings.model_dir, spec, progress=print)
                verb = "already prepared" if before == "ready" else "prepared and verified"
                print(f"{spec.id:16} {verb}: {folder}")
            except weights.WeightsError as exc:
                print(f"{spec.id:16} FAILED: {exc}", file=sys.stderr)
                failed = True
            continue
        st = weights.status(settings.model_dir, spec, deep=action == "verify")
        if action == "verify" and st.state != "ready":
            failed = True
        mark = "*" if spec.id in defaults else " "
        detail = f" ({st.detail})" if st.detail else ""
        print(f"{mark} {spec.id:16} {spec.stage:4} {st.state:13} {spec.description}{detail}")
    if action == "list":
        print(f"\n* = configured for this server; cache: {settings.model_dir}")
    return 1 if failed else 0


def _serve(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from realtalk.app.access_log import configure_server_logging
    from realtalk.app.drain import DrainingServer
    from realtalk.app.http_limits import RealtimeWebSocketProtocol, bounded_http_protocol
    from realtalk.app.server import create_app

    key, path = ensure_api_key(settings)
    origin = f"from {path} (mode 0600)" if path else "from REALTALK_API_KEY"
    logging.getLogger("realtalk").info("engine API key %s %s", mask_secret(key), origin)
    from realtalk.tools.loading import ToolsConfigError

    try:
        app = create_app(settings)
    except ToolsConfigError as exc:
        print(f"realtalk: {exc}", file=sys.stderr)
        return 2
    configure_server_logging(key)
    if settings.ssl_certfile is not None:
        # uvicorn's own "running on" line then says https://; the engine's URLs handed to the
        # page (/api/realtime/session) follow each request's scheme.
        logging.getLogger("realtalk").info(
            "TLS on: certificate %s, key %s", settings.ssl_certfile, settings.ssl_keyfile
        )
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        log_config=None,
        http=bounded_http_protocol(settings.header_timeout_s),
        ws=RealtimeWebSocketProtocol,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (or FORWARDED_ALLOW_IPS), so
        # any local client could pick its own address; REALTALK_TRUSTED_PROXIES decides instead.
        proxy_headers=False,
        # Above OpenAI's 15 MiB per append (base64: ~20 MiB), so an oversized append gets a
        # clear error event instead of a dropped connection.
        ws_max_size=32 * 1024 * 1024,
        # No permessage-deflate: inflating a frame runs on the event loop, and 32 KB of
        # compressed zeros inflates to a 32 MiB frame (audio, most of the traffic, barely
        # compresses anyway).
        ws_per_message_deflate=False,
    )
    server = DrainingServer(config, app.state.realtalk)
    server.run()
    return 0 if server.started else 3  # uvicorn's status for a failed startup


def _dev_cert(settings: Settings, folder: Path | None, hosts: list[str]) -> int:
    from realtalk.devcert import DevCertError, how_to_use, make_dev_certificate

    try:
        made = make_dev_certificate(folder or settings.data_dir / "tls", hosts)
    except (DevCertError, OSError) as exc:
        print(f"realtalk: {exc}", file=sys.stderr)
        return 2
    print(how_to_use(made), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="realtalk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument(
        "--ssl-certfile",
        type=Path,
        help="PEM certificate: serve https:// and wss:// (default REALTALK_SSL_CERTFILE)",
    )
    serve.add_argument(
        "--ssl-keyfile",
        type=Path,
        help="its unencrypted PEM private key (default REALTALK_SSL_KEYFILE)",
    )
    models = sub.add_parser("models", help="list, verify or prepare the local model cache")
    models.add_argument("action", nargs="?", default="list", choices=["list", "verify", "prepare"])
    models.add_argument("ids", nargs="*", help="model ids (default: the configured ones)")
    dev_cert = sub.add_parser(
        "dev-cert",
        help="make a local CA and a TLS certificate for development (localhost, 127.0.0.1, ::1)",
    )
    dev_cert.add_argument(
        "--dir", type=Path, help="where to write them (default <REALTALK_DATA_DIR>/tls)"
    )
    dev_cert.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name or IP address for the certificate (repeatable)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    debug = os.environ.get("REALTALK_DEBUG", "")
    for name in filter(None, debug.split(",")):  # e.g. REALTALK_DEBUG=realtalk.session
        logging.getLogger(name.strip()).setLevel(logging.DEBUG)
    overrides: dict[str, Path | None]
    if args.command == "serve":
        # A flag wins over its REALTALK_SSL_* variable; both are checked the same way.
        overrides = {
            name: value
            for name in ("ssl_certfile", "ssl_keyfile")
            if (value := getattr(args, name)) is not None
        }
    else:
        # The certificate files may not exist yet (dev-cert makes them), and only serve uses them.
        overrides = {"ssl_certfile": None, "ssl_keyfile": None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"realtalk: {exc}", file=sys.stderr)
        return 2
    if settings.log_format == "json":
        use_json_logs()
    if args.command == "models":
        return _models(settings, args.action, args.ids)
    if args.command == "dev-cert":
        return _dev_cert(settings, args.dir, args.host)
    return _serve(settings, args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
