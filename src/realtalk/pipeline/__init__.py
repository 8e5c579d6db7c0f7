"""The local speech pipeline: VAD, STT, LLM, TTS, and where their weights come from."""
