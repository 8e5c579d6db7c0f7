"""The ordered list of items one session talks about."""

from __future__ import annotations

from collections.abc import Iterator

from realtalk.core.items import Item
from realtalk.protocol.errors import ProtocolError

TRUNCATE_SLACK_MS = 20
"""A truncation this far past an item's audio is clamped to its end, not refused (one frame:
clients compute the played length their own way)."""


class Conversation:
    """Items in order; each knows the id of the item before it."""

    def __init__(self) -> None:
        self._items: list[Item] = []

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def previous_id(self, item_id: str) -> str | None:
        index = self._index(item_id)
        return self._items[index - 1].id if index > 0 else None

    def get(self, item_id: str) -> Item:
        return self._items[self._index(item_id)]

    def find(self, item_id: str) -> Item | None:
        return next((item for item in self._items if item.id == item_id), None)

    def insert(
        self, item: Item, previous_item_id: str | None = None, *, append: bool = True
    ) -> str | None:
        """Add ``item`` after ``previous_item_id`` (``"root"`` = first; ``None`` = at the end).

        Returns the id of the item it now follows."""
        if self.find(item.id) is not None:
            raise ProtocolError(
                f"Item with id '{item.id}' already exists.", "item_already_exists", "item.id"
            )
        if previous_item_id is None and append:
            previous = self.last_id()
            self._items.append(item)
            return previous
        if previous_item_id in (None, "root"):
            self._items.insert(0, item)
            return None
        assert previous_item_id is not None
        if self.find(previous_item_id) is None:
            raise ProtocolError(
                f"Previous item with id '{previous_item_id}' does not exist.",
                "item_not_found",
                "previous_item_id",
            )
        index = self._index(previous_item_id)
        self._items.insert(index + 1, item)
        return previous_item_id

    def delete(self, item_id: str) -> Item:
        item = self.get(item_id)
        self._items.remove(item)
        return item

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> int:
        """Cut an assistant item's audio at ``audio_end_ms``; its transcript keeps only what
        was heard by then. Returns where it was cut: up to one frame past the audio's end is
        taken as the end."""
        item = self.get(item_id)
        if item.type != "message" or item.role != "assistant":
            raise ProtocolError(
                "Only assistant messages can be truncated.", "invalid_value", "item_id"
            )
        if not 0 <= content_index < len(item.content):
            raise ProtocolError(
                f"Invalid 'content_index': item has {len(item.content)} part(s).",
                "invalid_value",
                "content_index",
            )
        part = item.content[content_index]
        if part.type != "output_audio":
            raise ProtocolError(
                "The content part has no audio to truncate.",
                "unsupported_content_type",
                "content_index",
            )
        if part.audio_ms < audio_end_ms <= part.audio_ms + TRUNCATE_SLACK_MS:
            audio_end_ms = part.audio_ms  # a client's own rounding of the length it received
        if audio_end_ms > part.audio_ms:
            raise ProtocolError(
                f"audio_end_ms ({audio_end_ms}) is longer than the item's audio "
                f"({part.audio_ms} ms).",
                "invalid_value",
                "audio_end_ms",
            )
        part.transcript = part.transcript_until(audio_end_ms)
        part.segments = [s for s in part.segments if s.start_ms < audio_end_ms]
        part.audio_ms = audio_end_ms
        return audio_end_ms

    def _index(self, item_id: str) -> int:
        for index, item in enumerate(self._items):
            if item.id == item_id:
                return index
        raise ProtocolError(f"Item with id '{item_id}' not found.", "item_not_found", "item_id")
