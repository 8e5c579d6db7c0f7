"""The Realtime wire format: the only package that knows event and session JSON shapes."""
