#!/usr/bin/env python3
"""Token ids from transformers' AutoTokenizer, the reference tests/hf_tokenizer.rs compares
selm-tui's tokenization with.

    python3 scripts/hf_tokenize.py DIR [--gguf FILE] < items.json

DIR is a tokenizer directory (tokenizer.json, optional tokenizer_config.json and config.json),
loaded with `AutoTokenizer.from_pretrained(DIR)`; with `--gguf FILE` (a file name in DIR), the
GGUF file is loaded instead, `AutoTokenizer.from_pretrained(DIR, gguf_file=FILE)`, which builds
the tokenizer from its metadata.

stdin holds a JSON list; each item is a text or a conversation (a list of {role, content}).
stdout is one JSON object:
    {"transformers": version, "bos_token_id", "eos_token_id", "pad_token_id",
     "results": [...]}
with, per item in order, for a text
    {"ids": tok(text)["input_ids"],
     "ids_no_special": tok(text, add_special_tokens=False)["input_ids"]}
and for a conversation
    {"ids": tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)}.

Needs transformers (`pip install transformers`), not torch or gguf. transformers reads a
GGUF's metadata in a module that also loads tensors and so imports torch at the top, and asks
for both packages; without them, a stand-in module lets that import succeed (nothing here
touches a tensor), and the model config transformers reads from the file only to pick the
tokenizer class is given as the file's architecture.
"""

import argparse
import importlib.util
import json
import sys
import types


def allow_gguf_without_torch():
    """Let transformers build a tokenizer from GGUF metadata without torch and the gguf
    package installed (with torch alone, transformers still asks for gguf)."""
    have = lambda name: importlib.util.find_spec(name) is not None  # noqa: E731
    if have("torch") and have("gguf"):
        return

    class Anything:
        def __getattr__(self, name):
            return Anything()

        def __call__(self, *args, **kwargs):
            return Anything()

    if not have("torch"):
        stand_in = types.ModuleType("torch")
        stand_in.__getattr__ = lambda name: Anything()
        sys.modules["torch"] = stand_in

    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.integrations.gguf import read_gguf_metadata

    def load_gguf_checkpoint(path, return_tensors=False, **kwargs):
        if return_tensors:
            raise RuntimeError("loading GGUF tensors needs torch")
        metadata, _ = read_gguf_metadata(path)
        return {"config": {"model_type": metadata["general.architecture"]}}

    gguf_utils.load_gguf_checkpoint = load_gguf_checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--gguf", help="a GGUF file in DIR to build the tokenizer from")
    args = parser.parse_args()

    import transformers
    from transformers import AutoTokenizer

    if args.gguf:
        allow_gguf_without_torch()
        tok = AutoTokenizer.from_pretrained(args.dir, gguf_file=args.gguf)
    else:
        tok = AutoTokenizer.from_pretrained(args.dir)

    results = []
    for item in json.load(sys.stdin):
        if isinstance(item, str):
            results.append(
                {
                    "ids": list(tok(item)["input_ids"]),
                    "ids_no_special": list(tok(item, add_special_tokens=False)["input_ids"]),
                }
            )
        else:
            out = tok.apply_chat_template(item, tokenize=True, add_generation_prompt=True)
            ids = out["input_ids"] if hasattr(out, "keys") else out
            results.append({"ids": list(ids)})
    json.dump(
        {
            "transformers": transformers.__version__,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "results": results,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
