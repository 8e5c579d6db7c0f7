"""realtalk: a self-hosted voice-agent server that speaks the OpenAI Realtime protocol."""

__version__ = "0.1.0"
