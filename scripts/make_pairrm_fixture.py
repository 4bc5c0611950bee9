#!/usr/bin/env python3
"""Writes tests/fixtures/tiny-pairrm: a randomly initialised PairRM of llm-blender's layout
(the pair ranker `llm-blender/PairRM` is) at a tiny size, and the scores llm-blender's own
`Blender.rank(..., return_scores=True)` gives it. scripts/pairrm_ranker.py, which scores
without llm-blender, is tested against them (tests/ranker.rs).

llm-blender 0.0.2 imports only under transformers 4.x, so this runs in an environment of its
own:

    python3 -m venv ENV
    ENV/bin/pip install llm-blender==0.0.2 'transformers==4.57.6' torch sentencepiece protobuf
    ENV/bin/python scripts/make_pairrm_fixture.py --out tests/fixtures/tiny-pairrm

The fixture has PairRM's files and nothing more: the ranker's config.json (ranker_type
"pairranker", model_type "deberta", model_name the backbone) and model.safetensors (the
CrossCompareReranker's state dict: `pretrained_model.*`, the DeBERTa-v3 encoder, and
`head_layer.*`); and in backbone/ what the hub's microsoft/deberta-v3-large holds apart from
its weights: config.json, spm.model, tokenizer_config.json. The backbone's config is
deberta-v3-large's with smaller sizes; the SentencePiece model is trained here on a small
generated corpus, with DeBERTa-v3's special pieces ([PAD] 0, [CLS] 1, [SEP] 2, [UNK] 3).
source_maxlength and candidate_maxlength are small, so that the cases below truncate.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch

SEED = 0
SOURCE_MAXLENGTH = 40
CANDIDATE_MAXLENGTH = 24

WORDS = (
    "the a an of to and in is it that for on with as was be by this are or his from at which "
    "but have not they you one had all were there when can we more what some out would so up "
    "if about who how into them then she many these time two may first like could water "
    "number way people my than been call long down day did get come made part over new "
    "sound take only little work know place year live back give most very after thing our "
    "just name good sentence man think say great where help through much before line right "
    "too mean old any same tell boy follow came want show also around form three small set "
    "put end does another well large must big even such because turn here why ask went men "
    "read need land different home us move try kind hand picture again change off play "
    "spell air away animal house point page letter mother answer found study still learn "
    "should America world high every near add food between own below country plant last "
    "school father keep tree never start city earth eye light thought head under story saw "
    "left few while along might close something seem next hard open example begin life "
    "always those both paper together got group often run important until children side "
    "feet car mile night walk white sea began grow took river four carry state once book "
    "hear stop without second later miss idea enough eat face watch far Indian real almost "
    "let above girl sometimes mountain cut young talk soon list song being leave family "
    "+ - = ? ! . , 0 1 2 3 4 5 6 7 8 9 é ü ñ"
).split()

# (source, candidates): lengths and contents that exercise truncation, the separator
# replacement, repeated and empty candidates, and text outside the corpus.
CASES = [
    ("What is 2 + 2?", ["4", "5", "four", "It is 4."]),
    ("Name a large animal.", ["the whale", "a small mouse"]),
    (
        " ".join(["tell me a long story about the river and the mountain"] * 6),
        [
            "once upon a time " * 8,
            "the end",
            "a boy walked along the river until night " * 3,
        ],
    ),
    ("Say something [SEP] with the separator.", ["ok [SEP] fine", "fine", "ok [SEP] fine"]),
    ("Grüße! ¿Qué tal?", ["", "bien", "très bien, merci", "zzz qqq xxx", "😀"]),
    ("Pick one.", ["same", "same"]),
]


def corpus(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def train_spm(dir: Path, rng: random.Random) -> Path:
    import sentencepiece as spm

    text = dir / "corpus.txt"
    text.write_text("\n".join(corpus(4000, rng)) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(dir / "spm"),
        vocab_size=320,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        pad_piece="[PAD]",
        bos_id=1,
        bos_piece="[CLS]",
        eos_id=2,
        eos_piece="[SEP]",
        unk_id=3,
        unk_piece="[UNK]",
        seed_sentencepiece_size=20000,
        num_threads=1,
        minloglevel=2,
    )
    return dir / "spm.model"


def backbone_config(vocab_size: int):
    from transformers import DebertaV2Config

    # microsoft/deberta-v3-large's config, smaller.
    return DebertaV2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=0,
        initializer_range=0.02,
        layer_norm_eps=1e-7,
        relative_attention=True,
        max_relative_positions=-1,
        position_buckets=16,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        pad_token_id=0,
    )


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn anew, larger than the default init, norms perturbed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.startswith("head_layer"):
                # Larger, so that the scores spread well beyond the tolerance.
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    import llm_blender
    import safetensors.torch
    import transformers
    from llm_blender.blender.blender_utils import load_ranker
    from llm_blender.pair_ranker.config import RankerConfig
    from transformers import AutoModel, DebertaV2Tokenizer

    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    backbone = out / "backbone"
    backbone.mkdir(parents=True)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spm_model = train_spm(tmp, rng)
        tokenizer = DebertaV2Tokenizer(vocab_file=str(spm_model))
        tokenizer.save_pretrained(str(backbone))
        # The hub's deberta-v3-large has spm.model and tokenizer_config.json (no
        # tokenizer.json, no added tokens): keep only those.
        for f in backbone.iterdir():
            if f.name not in ("spm.model", "tokenizer_config.json"):
                f.unlink()
        vocab = len(DebertaV2Tokenizer(vocab_file=str(spm_model)))
        config = backbone_config(vocab)
        config.save_pretrained(str(backbone))
        # llm-blender builds the encoder with AutoModel.from_pretrained(model_name): give it
        # weights to load (replaced by the ranker's own below; not kept in the fixture).
        staged = tmp / "backbone"
        shutil.copytree(backbone, staged)
        AutoModel.from_config(config).save_pretrained(str(staged))

        ranker_config = {
            "ranker_type": "pairranker",
            "model_type": "deberta",
            "model_name": "backbone",
            "cache_dir": None,
            "load_checkpoint": None,
            "source_maxlength": SOURCE_MAXLENGTH,
            "candidate_maxlength": CANDIDATE_MAXLENGTH,
            "n_tasks": 1,
            "num_pos": 5,
            "num_neg": 5,
            "sub_sampling_mode": "all_pair",
            "sub_sampling_ratio": 0.4,
            "loss_type": "instructgpt",
            "reduce_type": "linear",
            "inference_mode": "bubble",
            "drop_out": 0.05,
            "fp16": True,
            "device": None,
        }
        cfg = RankerConfig.from_dict({**ranker_config, "model_name": str(staged)})
        ranker, _, _ = load_ranker(cfg)
        randomize(ranker, args.seed + 1)
        safetensors.torch.save_model(ranker, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps(ranker_config, indent=2) + "\n")

        # llm-blender's own scores, from the fixture as written; its encoder is built from
        # the staged backbone (the fixture's, with weights), then given the fixture's.
        blender = llm_blender.Blender()
        blender.loadranker(str(out), device="cpu", model_name=str(staged))
        cases = []
        for source, candidates in CASES:
            scores = blender.rank([source], [candidates], return_scores=True, batch_size=1)
            cases.append({
                "source": source,
                "candidates": candidates,
                "scores": [float(s) for s in scores[0]],
            })

    expected = {
        "note": (
            f"llm-blender {getattr(llm_blender, '__version__', '0.0.2')} under transformers "
            f"{transformers.__version__} and torch {torch.__version__}, CPU, float32: "
            "Blender().loadranker(fixture, device='cpu'), then per case "
            "Blender.rank([source], [candidates], return_scores=True, batch_size=1); "
            "weights random (seed %d), see scripts/make_pairrm_fixture.py" % args.seed
        ),
        "cases": cases,
    }
    (out / "expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
