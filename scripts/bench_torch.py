#!/usr/bin/env python3
"""PyTorch eager + transformers on the shapes of `selm-tui bench`, and the ratios between them.

    python3 -m venv /tmp/pt && /tmp/pt/bin/pip install torch transformers
    /tmp/pt/bin/python scripts/bench_torch.py --preset smollm2-135m --selm target/release/selm-tui

Measures what `selm-tui bench` measures, the same way: one SELM update (policy forward and
backward on 3 * batch rows of `seq` tokens, the frozen reference's forward, global-norm clipping,
AdamW) after one warm-up update; with `--carried-reference` both sides take the reference
log-probs as given instead (computed once up front: selm-tui's loop keeps them from generation,
TRL's `precompute_ref_log_probs` computes them before training), and greedy decoding of `decode_batch` random 16-token prompts
with a KV cache, prefill included, no EOS stop. Random weights of the preset's shape. Peak RSS is
the process's (ru_maxrss), so the two are measured in separate processes.

With `--selm BIN`, runs `BIN bench --json` on the same options (and `--backend`), then prints
one table: selm-tui, PyTorch, and selm-tui / PyTorch for throughput (higher is better for
selm-tui) or PyTorch / selm-tui for memory (likewise). `--json` prints the rows instead.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

PRESETS = {
    # vocab, hidden, intermediate, layers, heads, kv heads, head_dim, tied, rope theta
    "tiny": (128, 64, 160, 2, 4, 2, 16, False, 10_000.0),
    "smollm2-135m": (49_152, 576, 1536, 30, 9, 3, 64, True, 100_000.0),
}
PROMPT_LEN = 16


def model_config(preset):
    from transformers import LlamaConfig

    v, h, i, n, heads, kv, hd, tied, theta = PRESETS[preset]
    return LlamaConfig(
        vocab_size=v,
        hidden_size=h,
        intermediate_size=i,
        num_hidden_layers=n,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=hd,
        tie_word_embeddings=tied,
        rope_theta=theta,
        rms_norm_eps=1e-5,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        attn_implementation="sdpa",
    )


def sequence_logps(model, rows, prompt_len):
    """Sum of response-token log-probs of right-aligned equal-length rows (as DPO trainers)."""
    import torch

    logits = model(rows).logits[:, :-1].float()
    targets = rows[:, 1:]
    logp = torch.log_softmax(logits, -1).gather(2, targets.unsqueeze(-1)).squeeze(-1)
    return logp[:, prompt_len - 1 :].sum(-1)


def bench_torch(args):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(1)
    torch.set_num_threads(args.threads)
    config = model_config(args.preset)
    policy = LlamaForCausalLM(config).float().train()
    reference = LlamaForCausalLM(config).float().eval()
    reference.load_state_dict(policy.state_dict())
    for p in reference.parameters():
        p.requires_grad_(False)
    params = sum(p.numel() for p in policy.parameters())
    optim = torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0.0)
    half = args.seq // 2
    g = torch.Generator().manual_seed(2)
    rows = torch.randint(3, config.vocab_size, (3 * args.batch, args.seq), generator=g)
    n = args.batch
    alpha, beta = 0.001, 0.01

    def reference_logps():
        with torch.no_grad():
            return sequence_logps(reference, rows, half)

    carried = reference_logps() if args.carried_reference else None

    def step():
        pol = sequence_logps(policy, rows, half)
        ref = carried if carried is not None else reference_logps()
        pc, pr, py = pol[:n], pol[n : 2 * n], pol[2 * n :]
        rc, rr, ry = ref[:n], ref[n : 2 * n], ref[2 * n :]
        logits = (pc - pr) - (rc - rr)
        loss = (-torch.nn.functional.logsigmoid(beta * logits) + alpha * beta * (py - ry)).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optim.step()
        return loss.item()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    train_s = (time.perf_counter() - start) / args.steps

    policy.eval()
    prompts = torch.randint(3, config.vocab_size, (args.decode_batch, PROMPT_LEN), generator=g)
    mask = torch.ones_like(prompts)

    def decode(new):
        with torch.no_grad():
            return policy.generate(
                input_ids=prompts,
                attention_mask=mask,
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                pad_token_id=2,
            )

    start = time.perf_counter()
    decode(1)
    prefill_s = time.perf_counter() - start
    start = time.perf_counter()
    out = decode(args.new_tokens)
    decode_s = time.perf_counter() - start
    generated = (out.shape[1] - PROMPT_LEN) * out.shape[0]
    return {
        "preset": args.preset,
        "reference_forward": not args.carried_reference,
        "backend": f"torch {torch.__version__} eager, {args.threads} threads",
        # ATEN_CPU_CAPABILITY=avx2 in the environment runs torch's AVX2 kernels on an AVX-512 CPU.
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "params": params,
        "batch": args.batch,
        "seq": args.seq,
        "train_ms_per_step": train_s * 1e3,
        "train_tokens_per_s": 3 * args.batch * args.seq / train_s,
        "decode_batch": args.decode_batch,
        "new_tokens": args.new_tokens,
        "decode_tokens_per_s": generated / decode_s,
        "prefill_ms": prefill_s * 1e3,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def bench_selm(args):
    cmd = [args.selm, "bench", "--json", "--preset", args.preset]
    for flag in ("batch", "seq", "steps", "decode_batch", "new_tokens"):
        cmd += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if args.backend:
        cmd += ["--backend", args.backend]
    if not args.carried_reference:
        cmd += ["--reference-forward"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# (field, label, higher is better)
ROWS = [
    ("train_tokens_per_s", "update tokens/s", True),
    ("train_ms_per_step", "update ms/step", False),
    ("decode_tokens_per_s", "decode tokens/s", True),
    ("prefill_ms", "prefill ms", False),
    ("peak_rss_mib", "peak RSS MiB", False),
]


def ratio_rows(selm, torch_):
    rows = []
    for field, label, higher in ROWS:
        s, t = selm[field], torch_[field]
        ratio = (s / t if higher else t / s) if s and t else float("nan")
        rows.append({"metric": label, "selm": s, "torch": t, "ratio": ratio})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--decode-batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--selm", help="selm-tui binary to run on the same shapes")
    p.add_argument("--backend", help="selm-tui --backend")
    p.add_argument(
        "--carried-reference",
        action="store_true",
        help="reference log-probs computed once, not in every update (both sides)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads is None:
        import os

        args.threads = len(os.sched_getaffinity(0))
    if args.seq < 2 or min(args.batch, args.steps, args.decode_batch, args.new_tokens) < 1:
        sys.exit("--seq needs at least 2; --batch, --steps, --decode-batch, --new-tokens at least 1")

    selm = bench_selm(args) if args.selm else None
    torch_ = bench_torch(args)
    if args.json:
        out = {"torch": torch_}
        if selm:
            out["selm"] = selm
            out["ratios"] = ratio_rows(selm, torch_)
        print(json.dumps(out))
        return
    if not selm:
        for field, label, _ in ROWS:
            print(f"{label:>18}: {torch_[field]:.1f}")
        return
    print(
        f"{args.preset}: {selm['backend']} ({selm.get('kernels', '?')} kernels) "
        f"vs {torch_['backend']} ({torch_['kernels']} kernels)"
    )
    ref = "carried" if args.carried_reference else "a forward pass per update"
    print(
        f"update {args.batch} triples x {args.seq} tokens (reference log-probs: {ref}); "
        f"decode batch {args.decode_batch} x {args.new_tokens}"
    )
    print("| metric | selm-tui | PyTorch | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for r in ratio_rows(selm, torch_):
        print(f"| {r['metric']} | {r['selm']:.1f} | {r['torch']:.1f} | {r['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
