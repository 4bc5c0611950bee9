#!/usr/bin/env python3
"""A small deterministic ranker for tests and smoke runs, speaking selm-tui's JSON-lines
ranker protocol (see the README): one request per line on stdin,
{"prompt": str, "candidates": [str, ...]}, one reply per line on stdout, {"scores": [float, ...]}.

Score: how close a response's length in words is to --target (default 12), plus a small bonus
for distinct words and a penalty for repeated lines, so that it prefers short, non-repetitive
answers. Pure function of the text: the same request always gets the same scores.
"""
import argparse
import json
import sys


def score(prompt: str, candidate: str, target: int) -> float:
    words = candidate.split()
    if not words:
        return -1.0
    closeness = 1.0 / (1.0 + abs(len(words) - target) / target)
    variety = len(set(words)) / len(words)
    lines = [l for l in candidate.splitlines() if l.strip()]
    repeats = len(lines) - len(set(lines))
    return round(closeness + 0.2 * variety - 0.1 * repeats, 6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", type=int, default=12)
    args = ap.parse_args()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        scores = [score(req["prompt"], c, args.target) for c in req["candidates"]]
        sys.stdout.write(json.dumps({"scores": scores}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
