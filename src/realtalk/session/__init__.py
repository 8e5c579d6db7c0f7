"""Sessions: configuration, keys, conversation, turns and responses (no transport, no models)."""
