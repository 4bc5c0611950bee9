#!/usr/bin/env python3
"""PairRM (llm-blender/PairRM) as a selm-tui ranker, the reward model of the SELM paper's
recipes. Speaks the JSON-lines ranker protocol (see docs/models-and-rankers.md): one request
per line on stdin, {"prompt": str, "candidates": [str, ...]}; one reply per line on stdout,
{"scores": [float, ...]} with one score per candidate, higher is better.

PairRM is scored here without llm-blender (whose 0.0.2 release imports only under
transformers 4.x): the same DeBERTa-v3 pair ranker, the same inputs and the same aggregation
as llm-blender's `Blender.rank([prompt], [candidates], return_scores=True)`, on transformers 5.
For each ordered pair (i, j), i != j, of a prompt's candidates the encoder reads
`[CLS]<|source|>prompt[SEP][CLS]<|candidate1|>c_i[SEP][CLS]<|candidate2|>c_j[SEP]`; a head on
(source, candidate) states gives each side a logit, and C[i][j] = left - right. Candidate i
scores mean_j (C[i][j] - C[j][i]) over all j (C[i][i] = 0). Prompts and candidates are cut as
llm-blender cuts them (source_maxlength, then candidate_maxlength plus half of what the
prompt left). tests/ranker.rs checks the scores against llm-blender's own on a random tiny
PairRM (tests/fixtures/tiny-pairrm, scripts/make_pairrm_fixture.py).

Setup: torch, transformers 5, sentencepiece and protobuf (DeBERTa-v3's tokenizer is a
SentencePiece model), e.g. the trainer's environment:

    ENV/bin/pip install -r scripts/requirements-pairrm.txt

then in the config:

    [rank]
    ranker = "command"
    command = ["ENV/bin/python", "scripts/pairrm_ranker.py", "--device", "cuda"]
    timeout_s = 600

`--model` takes a hub id (llm-blender/PairRM, fetched once into the HF cache) or a folder in
llm-blender's layout: its config.json (ranker_type "pairranker", model_name the backbone, a
hub id or a folder beside it) and model.safetensors or pytorch_model.bin.

Errors on one request are answered with {"error": "..."} so that selm-tui reports them with
the offending line; the model is loaded once, at start.
"""
import argparse
import json
import sys
from pathlib import Path
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


SOURCE, CAND1, CAND2, CAND = "<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>"
PREFIXES = [SOURCE, CAND1, CAND2, CAND]


class PairRM:
    """llm-blender's pair ranker (ranker_type "pairranker" on a DeBERTa encoder), loaded from
    its folder without llm-blender."""

    def __init__(self, path: str, device: str = "cpu", pairs_per_batch: int = 8):
        folder = local_folder(path)
        config_path = folder / "config.json"
        cfg = json.loads(config_path.read_text())
        kind = (cfg.get("ranker_type"), str(cfg.get("model_type")))
        if kind[0] != "pairranker" or not kind[1].startswith("deberta"):
            raise ValueError(
                f"{config_path}: ranker_type {kind[0]!r} and model_type {kind[1]!r}; "
                "PairRM is llm-blender's \"pairranker\" on a \"deberta\" encoder"
            )
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        backbone = folder / cfg["model_name"]
        name = str(backbone) if backbone.exists() else cfg["model_name"]
        tok = AutoTokenizer.from_pretrained(name)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.sep = tok.sep_token if tok.sep_token is not None else tok.eos_token
        # llm-blender's CrossCompareCollator: a tokenizer that does not wrap text in special
        # tokens gets the separator written out, after a cut through decoded text.
        self.manual_sep = len(tok.encode(self.sep)) == 1
        tok.add_tokens(PREFIXES)
        self.tok = tok
        self.ids = {p: tok.convert_tokens_to_ids(p) for p in PREFIXES}
        self.sep_id = tok.convert_tokens_to_ids(self.sep)
        self.source_max = int(cfg["source_maxlength"])
        self.candidate_max = int(cfg["candidate_maxlength"])

        state = load_state(folder)
        embeddings = "pretrained_model.embeddings.word_embeddings.weight"
        if embeddings not in state:
            raise ValueError(f"{folder}: no tensor {embeddings} in the weights")
        config = AutoConfig.from_pretrained(name)
        config.vocab_size = state[embeddings].shape[0]
        self.encoder = AutoModel.from_config(config)
        hidden, tasks = config.hidden_size, int(cfg.get("n_tasks", 1))
        drop = float(cfg.get("drop_out", 0.05))
        nn = torch.nn
        # As llm-blender's CrossCompareReranker.head_layer, so that the names match.
        self.head = nn.Sequential(
            nn.Dropout(drop), nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Dropout(drop),
            nn.Linear(hidden, tasks),
        )
        load_part(self.encoder, state, "pretrained_model.", folder)
        load_part(self.head, state, "head_layer.", folder)
        self.torch = torch
        self.device = device
        # As llm-blender's loadranker: half precision on a GPU when the config says fp16.
        half = device.split(":")[0] in ("cuda", "mps") and cfg.get("fp16", False)
        for m in (self.encoder, self.head):
            (m.half() if half else m.float()).to(device).eval()
        self.pairs_per_batch = max(1, pairs_per_batch)

    def encode(self, source: str, candidates: List[str]) -> tuple:
        """The ids of the source and of each candidate, cut as llm-blender cuts a batch of
        one prompt: the source to source_maxlength, each candidate to candidate_maxlength plus
        half of what the source left."""
        # A prefix's own string in a text would add a position the head reads (llm-blender
        # fails on those): such strings become spaces. A prompt keeps `<|candidate|>`, which
        # llm-blender reads as a token there.
        source = SOURCE + strip(source, [SOURCE, CAND1, CAND2]).replace(self.sep, " ")
        candidates = [CAND + strip(c, PREFIXES).replace(self.sep, " ") for c in candidates]
        if self.manual_sep:
            source = self.cut(source, self.source_max) + self.sep
            source_ids = self.tok.encode(source, truncation=True)
            left = self.source_max - len(source_ids)
            cut = [self.cut(c, self.candidate_max + left // 2) + self.sep for c in candidates]
            candidate_ids = [self.tok.encode(c, truncation=True) for c in cut]
        else:
            source_ids = self.tok.encode(source, max_length=self.source_max, truncation=True)
            left = self.source_max - len(source_ids)
            limit = self.candidate_max + left // 2
            candidate_ids = [self.tok.encode(c, max_length=limit, truncation=True) for c in candidates]
        return source_ids, candidate_ids

    def cut(self, text: str, max_length: int) -> str:
        ids = self.tok.encode(text, add_special_tokens=True, max_length=max_length, truncation=True)
        return self.tok.decode(ids, skip_special_tokens=True)

    def pair(self, source: List[int], left: List[int], right: List[int]) -> List[int]:
        """llm-blender's cat_ids: each part up to its last separator, then what followed."""
        left = [self.ids[CAND1] if t == self.ids[CAND] else t for t in left]
        right = [self.ids[CAND2] if t == self.ids[CAND] else t for t in right]
        parts = [source, left, right]
        cuts = []
        for p in parts:
            if self.sep_id not in p:
                raise ValueError(f"no separator {self.sep!r} in an encoded input")
            cuts.append(len(p) - p[::-1].index(self.sep_id))
        return [t for p, c in zip(parts, cuts) for t in p[:c]] + [
            t for p, c in zip(parts, cuts) for t in p[c:]
        ]

    def compare(self, rows: List[List[int]]) -> List[float]:
        """left - right for each pair row, the rows right-padded into one batch."""
        torch = self.torch
        width = max(len(r) for r in rows)
        pad = self.tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        with torch.no_grad():
            states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            at = lambda prefix: states[torch.arange(len(rows)), first(ids, self.ids[prefix])]
            source = at(SOURCE)
            left = self.head(torch.cat([source, at(CAND1)], dim=-1))
            right = self.head(torch.cat([source, at(CAND2)], dim=-1))
            return (left - right).mean(dim=-1).tolist()

    def score(self, source: str, candidates: List[str]) -> List[float]:
        import numpy as np

        source_ids, candidate_ids = self.encode(source, candidates)
        n = len(candidates)
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        cmp = np.zeros((n, n), dtype=np.float32)
        for k in range(0, len(pairs), self.pairs_per_batch):
            chunk = pairs[k : k + self.pairs_per_batch]
            rows = [self.pair(source_ids, candidate_ids[i], candidate_ids[j]) for i, j in chunk]
            for (i, j), c in zip(chunk, self.compare(rows)):
                cmp[i, j] = c
        # llm-blender's get_scores_from_cmps, policy "max_logits".
        return [float(s) for s in (cmp - cmp.T).mean(axis=-1)]


def strip(text: str, prefixes: List[str]) -> str:
    for p in prefixes:
        text = text.replace(p, " ")
    return text


def first(ids, token: int):
    """Per row, the first position holding `token`."""
    hits = ids == token
    if not bool(hits.any(dim=1).all()):
        raise ValueError(f"token {token} missing from an encoded pair")
    return hits.int().argmax(dim=1)


def local_folder(path: str) -> Path:
    """`path` if it is a folder, else the hub repository it names, fetched into the cache."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path))


def load_state(folder: Path) -> dict:
    """The ranker's state dict: model.safetensors, else pytorch_model.bin."""
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").exists():
        import torch

        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: neither model.safetensors nor pytorch_model.bin")


def load_part(module, state: dict, prefix: str, folder: Path) -> None:
    """Loads the tensors under `prefix` into `module`, naming any missing or unexpected one."""
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = sorted(k for k in own if k not in part)
    if missing:
        raise ValueError(f"{folder}: the weights lack {[prefix + k for k in missing]}")
    # Older checkpoints carry buffers newer transformers no longer keep (position_ids);
    # llm-blender loads non-strictly, so others are reported and skipped as it skips them.
    unexpected = sorted(k for k in part if k not in own)
    for k in unexpected:
        del part[k]
        if not k.endswith("position_ids"):
            print(f"pairrm_ranker: {folder}: tensor {prefix + k} is not used", file=sys.stderr)
    for k, v in part.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise ValueError(f"{folder}: tensor {prefix + k} has shape {list(v.shape)}, expected {list(own[k].shape)}")
    module.load_state_dict(part, strict=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llm-blender/PairRM")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pairs-per-batch", type=int, default=8, help="candidate pairs per forward pass")
    args = ap.parse_args()
    model = PairRM(args.model, args.device, args.pairs_per_batch)
    serve(model.score, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
