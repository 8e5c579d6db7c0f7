"""WebRTC transport (aiortc): SDP, ICE, the audio tracks and the ``oai-events`` data channel."""
