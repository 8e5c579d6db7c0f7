"""The clause chunker that feeds TTS while the LLM is still writing."""

from __future__ import annotations

from realtalk.pipeline.tts.chunker import ClauseChunker


def feed(chunker: ClauseChunker, text: str) -> list[str]:
    pieces: list[str] = []
    for token in text.split(" "):
        pieces += chunker.push(token + " ")
    return pieces + chunker.flush()


def test_sentences_and_an_early_first_clause() -> None:
    pieces = feed(
        ClauseChunker(),
        "Sure thing, your order 1001 has shipped. It arrives on "
        "Tuesday, around noon. Anything else?",
    )
    assert pieces == [
        "Sure thing,",
        "your order 1001 has shipped.",
        "It arrives on Tuesday, around noon.",
        "Anything else?",
    ]


def test_first_piece_after_a_few_words_without_punctuation() -> None:
    pieces = feed(
        ClauseChunker(first_max_words=4),
        "The capital of France is Paris and it is lovely in spring.",
    )
    assert pieces[0] == "The capital of France"
    assert " ".join(pieces) == "The capital of France is Paris and it is lovely in spring."


def test_long_text_without_punctuation_is_cut_at_words() -> None:
    words = " ".join(["word"] * 100)
    pieces = feed(ClauseChunker(max_chars=60), words)
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces).split() == words.split()


def test_nothing_is_lost_or_duplicated() -> None:
    text = "Hi! Well, let me see: order 1002 is processing; it ships in two days… Okay?"
    chunker = ClauseChunker()
    pieces = []
    for ch in text:  # a token per character, the worst case
        pieces += chunker.push(ch)
    pieces += chunker.flush()
    assert " ".join(pieces).split() == text.split()


def test_the_reply_starts_with_voice_not_lead_in() -> None:
    import numpy as np

    from realtalk.session.responses import trim_lead_in

    quiet, voice = np.full(1000, 30, np.int16), np.full(500, 5000, np.int16)
    trimmed = trim_lead_in(np.concatenate([quiet, voice]), 22_050)
    assert len(trimmed) == 500 + 220  # 10 ms of lead-in kept
    assert len(trim_lead_in(quiet, 22_050)) == 1000  # all quiet: left alone
