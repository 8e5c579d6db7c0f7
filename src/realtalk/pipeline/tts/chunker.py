"""Cuts a streaming reply into speakable pieces so audio starts after the first clause."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:—–]\s")


class ClauseChunker:
    """Feed text deltas; get back complete pieces.

    The first piece may end at a clause (comma, colon…) once it has ``first_min_chars``, or,
    with no punctuation yet, after ``first_max_words`` words, so the first audio comes early;
    later pieces end at sentences, or at a clause past ``max_chars``."""

    def __init__(
        self, first_min_chars: int = 10, first_max_words: int = 4, max_chars: int = 180
    ) -> None:
        self.first_min_chars = first_min_chars
        self.first_max_words = first_max_words
        self.max_chars = max_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        pieces: list[str] = []
        while piece := self._take():
            pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []

    def _take(self) -> str | None:
        text = self._buffer
        cut = None
        if match := _SENTENCE_END.search(text):
            cut = match.end()
        elif self._emitted == 0 or len(text) > self.max_chars:
            for match in _CLAUSE_END.finditer(text):
                if match.end() >= self.first_min_chars:
                    cut = match.end()
                    break
            if cut is None and len(text) > self.max_chars:
                cut = text.rfind(" ", 0, self.max_chars) + 1 or self.max_chars
            if cut is None and self._emitted == 0:
                # Whole words only: the text must go on after the last space.
                words = text.split(" ")
                if len(words) > self.first_max_words:
                    cut = len(" ".join(words[: self.first_max_words])) + 1
        if cut is None:
            return None
        piece, self._buffer = text[:cut].strip(), text[cut:]
        if not piece:
            return None
        self._emitted += 1
        return piece
