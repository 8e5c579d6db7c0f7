"""Conversation records: every session's metadata, transcript, tool calls, turn timings and
errors, kept in SQLite in the data folder (``REALTALK_RECORD``)."""

from realtalk.records.recorder import NullRecorder, Recorder, SessionRecorder
from realtalk.records.store import RecordStore

__all__ = ["NullRecorder", "RecordStore", "Recorder", "SessionRecorder"]
