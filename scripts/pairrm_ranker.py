#!/usr/bin/env python3
"""PairRM (llm-blender/PairRM) as a selm-tui ranker, the reward model of the SELM paper's
recipes. Speaks the JSON-lines ranker protocol (see the README): one request per line on
stdin, {"prompt": str, "candidates": [str, ...]}; one reply per line on stdout,
{"scores": [float, ...]} with one score per candidate, higher is better.

Setup: llm-blender 0.0.2 (PyPI) imports only under transformers 4.x (5.x dropped
`TRANSFORMERS_CACHE`, which it imports), so give it an environment of its own:

    python3 -m venv ENV && ENV/bin/pip install llm-blender==0.0.2 'transformers<5' torch

then in the config:

    [rank]
    ranker = "command"
    command = ["ENV/bin/python", "scripts/pairrm_ranker.py"]
    timeout_s = 600

Errors on one request are answered with {"error": "..."} so that selm-tui reports them with
the offending line; the model is loaded once, at start.
"""
import argparse
import json
import sys
from typing import Callable, List, TextIO

Scorer = Callable[[str, List[str]], List[float]]


def serve(score: Scorer, inp: TextIO, out: TextIO) -> int:
    """The protocol loop: read requests, answer each with scores. Returns requests served."""
    served = 0
    for line in inp:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            prompt, candidates = req["prompt"], req["candidates"]
            if not isinstance(prompt, str) or not isinstance(candidates, list):
                raise ValueError("expected a string prompt and a list of candidates")
            scores = [float(s) for s in score(prompt, candidates)]
            if len(scores) != len(candidates):
                raise ValueError(f"{len(scores)} scores for {len(candidates)} candidates")
            reply = {"scores": scores}
        except Exception as e:  # reported to selm-tui, which quotes the line
            reply = {"error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        served += 1
    return served


def pairrm_scorer(model: str, device: str) -> Scorer:
    import llm_blender  # imported here so that serve() is testable without it

    blender = llm_blender.Blender()
    blender.loadranker(model, device=device)

    def score(prompt: str, candidates: List[str]) -> List[float]:
        # rank(..., return_scores=True): one row per prompt, one score per candidate.
        scores = blender.rank([prompt], [candidates], return_scores=True, batch_size=1)
        return [float(s) for s in scores[0]]

    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llm-blender/PairRM")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    serve(pairrm_scorer(args.model, args.device), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
