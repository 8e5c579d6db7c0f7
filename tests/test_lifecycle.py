"""A closed session leaves nothing behind: no task, no thread, no session object."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import weakref

from fastapi.testclient import TestClient

from realtalk.app.server import create_app
from realtalk.app.state import ServerState
from realtalk.config import Settings
from realtalk.session import session as session_module
from tests.scripted import ScriptedLLM, scripted_models, text


def test_many_connect_disconnect_cycles_leave_nothing_behind(
    settings: Settings, monkeypatch: object
) -> None:
    created: weakref.WeakSet[object] = weakref.WeakSet()
    original_init = session_module.RealtimeSession.__init__

    def tracking_init(self: object, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]
        created.add(self)

    monkeypatch.setattr(session_module.RealtimeSession, "__init__", tracking_init)  # type: ignore[attr-defined]

    async def scripted(state: ServerState) -> None:
        # Slow replies (5 s): a client that hangs up mid-reply leaves one running.
        state.models = scripted_models(
            ScriptedLLM([[text("word ")] * 100] * 1000, token_delay_s=0.05)
        )

    assert settings.api_key is not None
    headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    with TestClient(create_app(settings, warmup=scripted)) as client:

        def tasks() -> int:
            return int(client.portal.call(lambda: _count_tasks()))  # type: ignore[union-attr]

        def cycle(talk: bool) -> None:
            with client.websocket_connect("/v1/realtime?model=x", headers=headers) as ws:
                assert json.loads(ws.receive_text())["type"] == "session.created"
                if talk:  # hang up while the reply is still being generated
                    ws.send_text(
                        json.dumps(
                            {
                                "type": "conversation.item.create",
                                "item": {
                                    "type": "message",
                                    "role": "user",
                                    "content": [{"type": "input_text", "text": "hello"}],
                                },
                            }
                        )
                    )
                    ws.send_text(json.dumps({"type": "response.create"}))
                    while json.loads(ws.receive_text())["type"] != "response.output_item.added":
                        pass

        for _ in range(5):  # warm up pools and caches
            cycle(True)
        baseline_tasks, baseline_threads = tasks(), threading.active_count()
        for index in range(200):
            cycle(talk=index % 2 == 0)
        for _ in range(25):  # well under the 5 s a leaked reply would keep running
            if tasks() <= baseline_tasks:
                break
            client.portal.call(asyncio.sleep, 0.02)  # type: ignore[union-attr]
        assert tasks() <= baseline_tasks
        assert threading.active_count() <= baseline_threads
        assert client.get("/healthz").json()["sessions"] == 0
    gc.collect()
    assert len(created) == 0


async def _count_tasks() -> int:
    return len(asyncio.all_tasks())
