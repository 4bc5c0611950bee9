#!/usr/bin/env python3
"""One SELM update in TRL: selm-tui's external trainer (`train.engine = "command"`).

A subclass of TRL's DPOTrainer (TRL 1.16) that adds SELM's optimism term to the sigmoid DPO
loss, exactly as the paper (arXiv 2405.19332) and the official code do:

    loss = -logsigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r)))
           + alpha * beta * (log pi_theta(y_ref) - log pi_ref(y_ref))

with y_ref the `reference_response` column (alpha = 0 is DPO; objective `xpo` adds
alpha * log pi_theta(y_ref) instead). It reads selm-tui's file contract (README, "External
engines"): `params.json` names the pairs (TRL preference JSONL with token ids), the policy and
reference HF directories, and where to write. It prints one JSON object per optimizer step on
stdout, with selm-tui's metric names; everything else goes to stderr. It saves the updated
policy as an HF directory, then measures, for selm-tui's inspector and evaluation, the pairs'
per-token log-probs and samples of the new policy on the held-out prompts under both models.

With `lora` in params.json (selm-tui's `[train.lora]`) it trains a LoRA adapter instead:
the base model with the adapter selm-tui hands it (iteration 1: a fresh one, drawn as
selm-tui's in-process update draws it), pi_ref being the base with that adapter frozen (TRL
copies it as "ref") or the base alone; it saves the trained adapter in PEFT's format in
`<out>/adapter/`, and the merged model at `out` when asked.

Runs alone (`python3 scripts/selm_trl.py --params P`), under `accelerate launch`, and under
DeepSpeed ZeRO-3 (`accelerate launch --config_file configs/accelerate/zero3.yaml ...`, which
saves a full 16-bit model; LoRA under ZeRO-3 has adapters in the base's dtype and was not run
by the tests). Requirements: scripts/requirements-trl.txt (LoRA: scripts/requirements-lora.txt).
"""

import argparse
import json
import math
import os
import sys


def redirect_stdout():
    """The metrics stream is the real stdout; every other print goes to stderr."""
    metrics = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return metrics


METRICS = redirect_stdout()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from datasets import Dataset  # noqa: E402
from torch.utils.data import SequentialSampler  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402
from accelerate.utils import gather_object  # noqa: E402
from trl.models.utils import unwrap_model_for_generation  # noqa: E402
from trl.trainer.utils import use_adapter  # noqa: E402

BLOCKS = ("chosen", "rejected", "reference")
OBJECTIVES = ("selm", "dpo", "xpo")
# SelmTrainer overrides private hooks of DPOTrainer (_compute_loss, _prepare_dataset, ...):
# under another TRL they may be bypassed and the optimism term silently lost. The versions it
# was checked with; SELM_TRL_ANY_VERSION=1 runs anyway (the step check below still holds).
TRL_VERSIONS = ("1.16",)


def check_trl():
    import trl

    version = ".".join(trl.__version__.split(".")[:2])
    if version not in TRL_VERSIONS and os.environ.get("SELM_TRL_ANY_VERSION") != "1":
        raise SystemExit(
            f"TRL {trl.__version__}: selm_trl.py overrides DPOTrainer hooks checked with TRL "
            f"{', '.join(TRL_VERSIONS)} only (scripts/requirements-trl.txt); install that, or "
            "set SELM_TRL_ANY_VERSION=1 to try this one"
        )


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def pad_right(rows, value):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


class SelmCollator:
    """Prompt + response rows, padded right: every chosen, then every rejected, then every
    y_ref, with a mask of the response tokens."""

    def __init__(self, pad_token_id):
        self.pad = pad_token_id

    def __call__(self, examples):
        ids, masks = [], []
        weight = torch.tensor([float(ex.get("weight", 1.0)) for ex in examples])
        for block in BLOCKS:
            for ex in examples:
                prompt, response = ex["prompt_ids"], ex[f"{block}_ids"]
                ids.append(prompt + response)
                masks.append([0] * len(prompt) + [1] * len(response))
        return {
            "input_ids": pad_right(ids, self.pad),
            "attention_mask": pad_right([[1] * len(r) for r in ids], 0),
            "completion_mask": pad_right(masks, 0),
            "weight": weight,
        }


def response_logps(model, input_ids, attention_mask, completion_mask):
    """Per-token log-probs of the response tokens (zero elsewhere), shape [rows, len - 1],
    through the fused LM head TRL adds to its models."""
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        use_cache=False,
        fused_lm_head=True,
    )
    shifted = completion_mask[:, 1:]
    return out.log_probs[:, -shifted.size(1) :] * shifted


def reference_logps(trainer, model, *args):
    """pi_ref's per-token log-probs: the reference model's, or for a LoRA update the policy's
    base with the frozen "ref" adapter (or none), in eval mode (no adapter dropout)."""
    with torch.no_grad():
        if trainer.ref_model is not None:
            return response_logps(trainer.ref_model, *args)
        peft_model = trainer.accelerator.unwrap_model(trainer.model)
        training = peft_model.training
        peft_model.eval()
        try:
            with use_adapter(peft_model, trainer.ref_adapter):
                return response_logps(model, *args)
        finally:
            peft_model.train(training)


class SelmTrainer(DPOTrainer):
    """DPOTrainer with SELM's optimism term, selm-tui's step order and metric names."""

    def __init__(self, *args, objective, alpha, pairs, ref_adapter=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.alpha = alpha
        self.pairs = pairs
        # A LoRA update's pi_ref: "ref" (TRL's frozen copy of the starting adapter) or None
        # (the base, adapters disabled).
        self.ref_adapter = ref_adapter
        # compute_loss returns the step's mean already (see `_step_share`).
        self.loss_is_scaled_for_ga = True
        self._rows = []
        self._step_lr = None
        # Training steps that went through _compute_loss (SELM's loss).
        self.selm_steps = 0

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # selm-tui's rows carry the exact token ids it trained on: no re-tokenizing.
        if "prompt_ids" in dataset.column_names:
            return dataset
        raise ValueError("the pairs need prompt_ids, chosen_ids, rejected_ids, reference_ids")

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [f"{b}_ids" for b in ("prompt",) + BLOCKS] + ["weight"]

    def _get_train_sampler(self, *args, **kwargs):
        # selm-tui wrote the pairs in its mini-batch order.
        return SequentialSampler(self.train_dataset)

    def _step_scale(self):
        """What a micro-batch's sum of losses is divided by so that the gradients, summed
        over the step's micro-batches and averaged over processes, are the step's mean: the
        real pairs in the step (padding rows weigh 0), per process."""
        b = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        b *= self.accelerator.num_processes
        done = self.state.global_step * b
        return max(min(b, self.pairs - done), 1) / self.accelerator.num_processes

    def _compute_loss(self, model, inputs, return_outputs):
        args = (inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])
        weight = inputs["weight"].to(inputs["input_ids"].device)
        policy = response_logps(model, *args).sum(1)
        reference = reference_logps(self, model, *args).sum(1)
        pc, pr, py = policy.chunk(3)
        rc, rr, ry = reference.chunk(3)
        logits = (pc - pr) - (rc - rr)
        dpo = -F.logsigmoid(self.beta * logits)
        if self.objective == "selm":
            optimism = self.alpha * self.beta * (py - ry)
        elif self.objective == "xpo":
            optimism = self.alpha * py
        elif self.objective == "dpo":
            optimism = torch.zeros_like(dpo)
        else:
            raise ValueError(f"unknown objective {self.objective!r}")
        losses = dpo + optimism
        if self.model.training:
            self.selm_steps += 1
            self._step_lr = self._get_learning_rate()
            rows = torch.stack([pc, pr, py, rc, rr, ry, losses, dpo, optimism, weight], 1)
            rows = self.accelerator.gather(rows.detach()).float().cpu()
            self._rows.append(rows[rows[:, -1] > 0, :-1])
        loss = (losses * weight).sum() / self._step_scale()
        return (loss, None) if return_outputs else loss

    def log(self, logs, start_time=None):
        if self._rows and "loss" in logs:
            print_metrics(torch.cat(self._rows), self.alpha, self.beta, logs, self._step_lr)
            self._rows = []
        super().log(logs, start_time)


def print_metrics(rows, alpha, beta, logs, lr):
    """One step's metrics, as selm-tui's in-process update computes them."""
    pc, pr, py, rc, rr, ry, losses, dpo, optimism = rows.double().unbind(1)
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    line = {
        "loss": losses.mean().item(),
        "loss/dpo": dpo.mean().item(),
        "loss/optimism": optimism.mean().item(),
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/accuracies": (chosen > rejected).double().mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "logps/chosen": pc.mean().item(),
        "logps/rejected": pr.mean().item(),
        "logps/pi_response": py.mean().item(),
        "logps/ref_response": ry.mean().item(),
        "alpha": alpha,
        "beta": beta,
        "grad_norm": float(logs.get("grad_norm", float("nan"))),
        "lr": float(lr),
    }
    # JSON has no NaN or infinity: null, which selm-tui reads as NaN (and stops on).
    line = {k: (v if math.isfinite(v) else None) for k, v in line.items()}
    if int(os.environ.get("RANK", "0")) == 0:
        METRICS.write(json.dumps(line) + "\n")


def share(n, acc):
    """This process's share of n items (every world-th index), padded with -1 so that every
    process gets as many (ZeRO-3 runs forward passes in lock-step)."""
    world = acc.num_processes
    per_rank = -(-n // world)
    return [i if i < n else -1 for i in range(acc.process_index, per_rank * world, world)]


def gathered(acc, results):
    """Every process's (index, value) results, in index order, padding dropped."""
    every = gather_object(results) if acc.num_processes > 1 else results
    return [v for i, v in sorted(every, key=lambda x: x[0]) if i >= 0]


def measure_pairs(trainer, rows, batch):
    """Per-token log-probs of each pair's chosen, rejected and y_ref under both models, the
    batches shared out among the processes."""
    acc = trainer.accelerator
    batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    mine = [(i, measure_batch(trainer, batches[max(i, 0)])) for i in share(len(batches), acc)]
    return [pair for chunk in gathered(acc, mine) for pair in chunk]


def measure_batch(trainer, chunk):
    collate = SelmCollator(trainer.processing_class.pad_token_id)
    inputs = {k: v.to(trainer.accelerator.device) for k, v in collate(chunk).items()}
    args = (inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])
    with torch.no_grad():
        policy = response_logps(trainer.model_wrapped, *args)
    both = [policy, reference_logps(trainer, trainer.model_wrapped, *args)]
    n = len(chunk)
    out = []
    for i, ex in enumerate(chunk):
        pair = {}
        for b, block in enumerate(BLOCKS):
            row = b * n + i
            start_at, length = len(ex["prompt_ids"]) - 1, len(ex[f"{block}_ids"])
            pick = slice(start_at, start_at + length)
            name = "y_ref" if block == "reference" else block
            pair[name] = {
                "policy": both[0][row, pick].float().tolist(),
                "reference": both[1][row, pick].float().tolist(),
            }
        out.append(pair)
    return out


def sample_held_out(trainer, prompts, p):
    """`eval_samples` samples of the updated policy per held-out prompt (the prompts shared
    out among the processes), with their summed log-probs under it and under pi_ref (the k1
    estimate of KL is their mean difference)."""
    acc = trainer.accelerator
    eos = p["eos_token_ids"]
    temperature = p["eval_temperature"]
    mine = []
    # One gather of ZeRO-3's shards for all of this process's prompts; generation is then
    # local, with no collective.
    with unwrap_model_for_generation(trainer.model_wrapped, acc) as model:
        for i in (i for i in share(len(prompts), acc) if i >= 0):
            prompt = torch.tensor([prompts[i]["prompt_ids"]], device=acc.device)
            torch.manual_seed(prompts[i]["seed"])
            generated = model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_k=0,
                top_p=1.0,
                max_new_tokens=p["max_new_tokens"],
                num_return_sequences=p["eval_samples"],
                eos_token_id=eos,
                pad_token_id=trainer.processing_class.pad_token_id,
                suppress_tokens=p["suppress_token_ids"] or None,
            )
            samples = []
            for seq in generated[:, prompt.size(1) :].tolist():
                ends = [k for k, t in enumerate(seq) if t in eos]
                samples.append(seq[: ends[0] + 1] if ends else seq)
            mine.append((i, samples))
    per_prompt = gathered(acc, mine)
    rows = [
        {"prompt_ids": prompts[i]["prompt_ids"], "chosen_ids": s, "rejected_ids": s, "reference_ids": s}
        for i, samples in enumerate(per_prompt)
        for s in samples
    ]
    logps = iter(measure_pairs(trainer, rows, max(p["eval_samples"], 1)))
    out = []
    for samples in per_prompt:
        measured = [(s, next(logps)) for s in samples]
        out.append(
            {
                "samples": [
                    {
                        "ids": s,
                        "policy_logp": sum(m["chosen"]["policy"]),
                        "reference_logp": sum(m["chosen"]["reference"]),
                    }
                    for s, m in measured
                ]
            }
        )
    return out


def training_args(p, pairs, world):
    micro = p["micro_batch_size"] or p["batch_size"] // world
    if micro == 0 or p["batch_size"] % (micro * world):
        raise SystemExit(
            f"train.batch_size {p['batch_size']} must be a multiple of train.micro_batch_size "
            f"({p['micro_batch_size'] or 'unset'}) x {world} processes"
        )
    steps = math.ceil(pairs / p["batch_size"]) * p["epochs"]
    cuda = torch.cuda.is_available()
    return DPOConfig(
        output_dir=os.path.join(os.path.dirname(p["out"]), "trl"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=p["batch_size"] // (micro * world),
        num_train_epochs=p["epochs"],
        learning_rate=p["lr"],
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(p["warmup_ratio"] * steps),
        max_grad_norm=p["max_grad_norm"] or 0.0,
        weight_decay=p["weight_decay"],
        beta=p["beta"],
        seed=p["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        bf16=cuda,
        use_cpu=not cuda,
        activation_checkpointing=cuda,
        disable_tqdm=True,
        dataloader_drop_last=False,
    )


def padded_rows(rows, config, world):
    """The pairs, weight 1, then copies of the first with weight 0 up to a multiple of one
    round of micro-batches over the processes, so that accelerate pads no last round with
    real pairs (which would train on them twice)."""
    columns = [f"{b}_ids" for b in ("prompt",) + BLOCKS]
    out = [{**{c: r[c] for c in columns}, "weight": 1.0} for r in rows]
    round_ = config.per_device_train_batch_size * world
    filler = {**out[0], "weight": 0.0}
    return out + [filler] * (-len(out) % round_)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", required=True, help="selm-tui's params.json")
    args = parser.parse_args()
    with open(args.params) as f:
        p = json.load(f)
    check_trl()
    if p["objective"] not in OBJECTIVES:
        raise SystemExit(f"{args.params}: unknown objective {p['objective']!r} (one of {OBJECTIVES})")
    rows = read_jsonl(p["input"])
    if not rows:
        raise SystemExit(f"{p['input']}: no pairs")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = training_args(p, len(rows), world)
    tokenizer = AutoTokenizer.from_pretrained(p["model"])
    # selm-tui's special ids (a tokenizer.json alone may name none).
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(p["pad_token_id"])
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(p["eos_token_ids"][0])
    model, ref_model, ref_adapter = load_models(p)
    dataset = Dataset.from_list(padded_rows(rows, config, world))
    trainer = SelmTrainer(
        model=model,
        ref_model=ref_model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=SelmCollator(tokenizer.pad_token_id),
        objective=p["objective"],
        alpha=p["alpha"],
        pairs=len(rows),
        ref_adapter=ref_adapter,
    )
    if p.get("lora"):
        set_adapter_dropout(trainer.model, p["lora"]["dropout"])
    trainer.train()
    if trainer.selm_steps == 0:
        raise SystemExit(
            f"TRL {trl_version()} trained without calling SelmTrainer._compute_loss: the update "
            "would not be SELM's; no model is saved"
        )
    if p.get("lora"):
        save_lora(trainer, p)
    else:
        trainer.save_model(p["out"])
    trainer.model_wrapped.eval()
    batch = config.per_device_train_batch_size
    pair_logps = measure_pairs(trainer, rows, batch)
    eval_samples = sample_held_out(trainer, read_jsonl(p["eval_prompts"]), p)
    if trainer.accelerator.is_main_process:
        for path, items in ((p["pair_logps_out"], pair_logps), (p["eval_samples_out"], eval_samples)):
            with open(path + ".tmp", "w") as f:
                f.writelines(json.dumps(x) + "\n" for x in items)
            os.replace(path + ".tmp", path)


def load_models(p):
    """The policy, the reference model (None for LoRA) and, for LoRA, pi_ref's adapter."""
    if not p.get("lora"):
        # float32 weights: bf16 runs as autocast (or DeepSpeed's bf16 with float32 masters),
        # as steps of lr 5e-7 would round away on bf16 weights.
        model = AutoModelForCausalLM.from_pretrained(p["model"], dtype=torch.float32)
        ref_model = AutoModelForCausalLM.from_pretrained(p["ref_model"], dtype=torch.float32)
        return model, ref_model, None
    from peft import LoraConfig, PeftModel

    lora = p["lora"]
    config = LoraConfig.from_pretrained(lora["adapter"])
    want = (lora["rank"], float(lora["alpha"]), set(lora["target_modules"]), lora["rslora"])
    have = (config.r, float(config.lora_alpha), set(config.target_modules), config.use_rslora)
    if want != have:
        raise SystemExit(
            f"{lora['adapter']}: adapter (r, alpha, targets, rslora) = {have}, params.json "
            f"says {want}"
        )
    config.lora_dropout = lora["dropout"]
    config.inference_mode = False
    # The base is frozen: bf16 on a GPU (only the adapters take steps, in float32 but under
    # ZeRO-3, whose parameters must share one dtype: TRL #6089).
    from transformers.integrations import is_deepspeed_zero3_enabled

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    base = AutoModelForCausalLM.from_pretrained(p["model"], dtype=dtype)
    model = PeftModel.from_pretrained(
        base,
        lora["adapter"],
        config=config,
        is_trainable=True,
        autocast_adapter_dtype=not is_deepspeed_zero3_enabled(),
    )
    # TRL copies the starting adapter as a frozen "ref" adapter (ref_model=None).
    return model, None, "ref" if lora["reference_adapter"] else None


def set_adapter_dropout(model, p):
    """peft's dropout on the trained adapter's input. TRL's `disable_dropout` (on by default,
    for the model's own dropout) zeroes every nn.Dropout, the adapter's included: set it
    back."""
    if p == 0:
        return
    layers = [
        m.lora_dropout["default"]
        for m in model.modules()
        if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
        and "default" in m.lora_dropout
    ]
    if not layers or not all(isinstance(d, torch.nn.Dropout) for d in layers):
        raise SystemExit(f"lora.dropout {p}: the adapter has no dropout layers to set")
    for d in layers:
        d.p = p


def save_lora(trainer, p):
    """The trained adapter in PEFT's format at <out>/adapter (and, when asked, the merged
    model at out), from the whole state (gathered from ZeRO-3's shards on every process)."""
    state = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not trainer.accelerator.is_main_process:
        return
    peft_model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    out = os.path.join(p["out"], "adapter")
    peft_model.save_pretrained(
        out, state_dict=state, selected_adapters=["default"], save_embedding_layers=False
    )
    if p["lora"]["merged"]:
        save_merged(peft_model, state, p)


def save_merged(peft_model, state, p):
    """W + scale * B A for every adapted projection (computed in float32), the rest of the
    base as it is, saved as an HF directory in the dtype the base was loaded in: float32 on
    the CPU, bf16 on a GPU (where a small update may round away: adapter-only checkpoints
    keep it whole)."""
    from safetensors.torch import save_file

    lora = p["lora"]
    scale = lora["alpha"] / (math.sqrt(lora["rank"]) if lora["rslora"] else lora["rank"])
    base, adapters = {}, {}
    for key, tensor in state.items():
        name = key.removeprefix("base_model.model.")
        if ".lora_A.default." in name or ".lora_B.default." in name:
            adapters[name] = tensor
        elif ".lora_" not in name:
            base[name.replace(".base_layer.", ".")] = tensor
    for name, a in adapters.items():
        if ".lora_A." not in name:
            continue
        b = adapters[name.replace(".lora_A.", ".lora_B.")]
        weight = name.replace(".lora_A.default.weight", ".weight")
        w = base[weight]
        base[weight] = (w.float() + scale * (b.float() @ a.float())).to(w.dtype)
    config = peft_model.get_base_model().config
    if getattr(config, "tie_word_embeddings", False):
        base.pop("lm_head.weight", None)
    os.makedirs(p["out"], exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in base.items()}
    save_file(tensors, os.path.join(p["out"], "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(p["out"])


def trl_version():
    import trl

    return trl.__version__


if __name__ == "__main__":
    main()
