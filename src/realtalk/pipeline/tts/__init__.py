"""Text to speech, and the chunker that feeds it clause by clause."""
