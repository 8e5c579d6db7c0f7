"""Latency under concurrency: N conversations speaking at the same moment vs one alone.

Each conversation is a WebSocket session streaming generated speech in real time (see
``ws_turn.py``); the figure is "first audio delta" (end of speech → first reply audio). The
target the design leaves room for: 4 concurrent conversations at ≤ 2× single-session latency.

Usage: python bench/concurrent_turns.py [--url URL] [--sessions 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ws_turn import QUESTIONS, engine, one_turn

STAGE = "first audio delta"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--url")
    parser.add_argument("--key")
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with engine(args.url, args.key) as (url, key):
        await one_turn(url, key, "Hello there.")  # warm-up
        alone = [
            (await one_turn(url, key, QUESTIONS[i % len(QUESTIONS)]))[STAGE]
            for i in range(args.rounds * 2)
        ]
        together: list[float] = []
        for round_index in range(args.rounds):
            results = await asyncio.gather(
                *[
                    one_turn(url, key, QUESTIONS[(round_index + i) % len(QUESTIONS)])
                    for i in range(args.sessions)
                ]
            )
            together += [r[STAGE] for r in results]
    one, many = statistics.median(alone) * 1000, statistics.median(together) * 1000
    print(f"end of speech → first reply audio, WebSocket ({url})")
    print(f"1 session alone:        median {one:.0f} ms  (n={len(alone)})")
    print(
        f"{args.sessions} sessions at once:    median {many:.0f} ms  "
        f"max {max(together) * 1000:.0f} ms  (n={len(together)})"
    )
    print(f"ratio: {many / one:.2f}× (target ≤ 2×)")


if __name__ == "__main__":
    asyncio.run(main())
