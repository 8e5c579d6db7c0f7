"""The engine's own vocabulary: session configuration, conversation items, client commands.

The bottom of the package graph: ``protocol/`` (the wire) and ``session/`` (the behaviour)
both import it, and it imports neither.
"""
