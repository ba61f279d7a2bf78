"""The `transmod` command: sample, correlate, assign, transfer. Each step reads and writes files."""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from transmod.errors import TransmodError
from transmod.layermap import MAPPINGS
from transmod.samplefile import PEFT_TYPES

EXAMPLES = {
    "sample": """examples:
  transmod sample --model bert-base-multilingual-cased --peft adapter --data sents.txt --out teacher.parquet
  transmod sample --model models/student --peft lora --data train.parquet --out student.parquet --max-tokens 20000""",
    "correlate": """examples:
  transmod correlate --teacher teacher.parquet --student student.parquet --mapping skip --out corr.safetensors""",
    "assign": """examples:
  transmod assign --correlation corr.safetensors --out assignment.json""",
    "transfer": """examples:
  # same width (mBERT -> DistilmBERT): layer mapping only
  transmod transfer --module ner_adapter --teacher-model bert-base-multilingual-cased \\
      --student-model distilbert-base-multilingual-cased --mapping skip --out ner_adapter_student
  # different widths, with a precomputed assignment
  transmod transfer --module ner_lora --teacher-model xlm-roberta-large --student-model xlm-roberta-base \\
      --mapping avg --assignment assignment.json --out ner_lora_student
  # different widths, one shot: samples, correlates and assigns on the way
  transmod transfer --module ner_lora --teacher-model xlm-roberta-large --student-model xlm-roberta-base \\
      --mapping skip --samples sents.txt --out ner_lora_student
load the result with: model.load_adapter(OUT, use_safetensors=True)""",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transmod", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("sample", "Write the hidden states each module reads, per layer, to a parquet file.")
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--peft", required=True, choices=PEFT_TYPES, help="module type: decides the hook point")
    p.add_argument("--data", required=True, help="text file (sentence, or tab-separated pair, per line) or task parquet")
    p.add_argument("--out", required=True, help="output .parquet")
    p.add_argument("--max-tokens", type=int, default=None, help="keep the first N tokens (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128, help="truncate examples to this many tokens")
    p.add_argument("--lora-outputs", action="store_true", help="also sample query/value outputs (for --lora-b output)")

    p = command("correlate", "Pearson r of every student dim against every teacher dim, per mapped layer.")
    p.add_argument("--teacher", required=True, help="teacher sample parquet")
    p.add_argument("--student", required=True, help="student sample parquet")
    p.add_argument("--mapping", required=True, choices=MAPPINGS)
    p.add_argument("--out", required=True, help="output correlation file (safetensors)")
    p.add_argument("--batch-size", type=int, default=2048, help="tokens per streamed batch")
    p.add_argument("--teacher-model", help="check the teacher samples against this model's shape")
    p.add_argument("--student-model", help="check the student samples against this model's shape")

    p = command("assign", "Linear sum assignment per layer: a teacher dim for each student dim.")
    p.add_argument("--correlation", required=True, help="correlation file from `transmod correlate`")
    p.add_argument("--out", required=True, help="output assignment .json")

    p = command("transfer", "Move a module saved by `adapters` from the teacher to the student.")
    p.add_argument("--module", required=True, help="module folder written by adapters' save_adapter")
    p.add_argument("--teacher-model", required=True, help="hub id or local folder of the module's model")
    p.add_argument("--student-model", required=True, help="hub id or local folder of the target model")
    p.add_argument("--mapping", required=True, choices=MAPPINGS)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--assignment", help="assignment .json from `transmod assign`")
    source.add_argument("--samples", help="text or parquet data to sample, correlate and assign on the way")
    p.add_argument("--max-tokens", type=int, default=20000, help="tokens to sample with --samples")
    p.add_argument("--lora-b", default="study", choices=("study", "output"),
                   help="align LoRA B with the input's permutation (study) or with query/value outputs (output)")
    p.add_argument("--out", required=True, help="output module folder")
    return parser


def _sample(args: argparse.Namespace) -> None:
    from transmod.atomic import atomic_path
    from transmod.sampling import sample_model
    from transmod.texts import read_texts

    examples = read_texts(args.data)
    with atomic_path(args.out) as tmp:
        n = sample_model(args.model, examples, {args.peft: tmp}, max_tokens=args.max_tokens,
                         batch_size=args.batch_size, max_length=args.max_length, lora_outputs=args.lora_outputs)
        if n == 0:
            raise TransmodError(f"{args.data}: no tokens left after removing special tokens; give more text")
    print(f"wrote {n} tokens to {args.out}")


def _correlate(args: argparse.Namespace) -> None:
    from transmod.atomic import atomic_path
    from transmod.correlation import correlate_samples
    from transmod.samplefile import SampleFile

    from transmod.architectures import load_model_shape

    teacher, student = SampleFile.open(args.teacher), SampleFile.open(args.student)
    for sample, model in ((teacher, args.teacher_model), (student, args.student_model)):
        if model:
            sample.check_model(load_model_shape(model))
    corr = correlate_samples(teacher, student, args.mapping, args.batch_size)
    with atomic_path(args.out) as tmp:
        corr.save(tmp)
    print(f"correlated {len(corr.layers)} layer pairs over {corr.num_tokens} tokens into {args.out}")


def _assign(args: argparse.Namespace) -> None:
    from transmod.assignment import assign_correlation
    from transmod.atomic import atomic_path
    from transmod.correlation import Correlation

    result = assign_correlation(Correlation.load(args.correlation))
    with atomic_path(args.out) as tmp:
        result.save(tmp)
    for la in result.layers:
        print(f"student layer {la.student_layer} <- teacher {la.teacher_layers} [{la.space}]: mean matched r = {la.mean_r:.3f}")


def _transfer(args: argparse.Namespace) -> None:
    from transmod.architectures import load_model_shape
    from transmod.assignment import Assignment
    from transmod.transfer import read_module, transfer_module

    teacher, student = load_model_shape(args.teacher_model), load_model_shape(args.student_model)
    if student.num_layers > teacher.num_layers:
        raise TransmodError(
            f"--student-model {student.name} ({student.num_layers} layers) is deeper than --teacher-model "
            f"{teacher.name} ({teacher.num_layers} layers); swap them"
        )
    assignment = Assignment.load(args.assignment) if args.assignment else None
    if assignment is None and args.samples and teacher.hidden_size != student.hidden_size:
        kind = read_module(args.module, teacher).kind
        assignment = _assignment_from_samples(args, kind)
    transfer_module(args.module, teacher, student, args.mapping, args.out, assignment, args.lora_b)
    print(f"wrote the transferred module to {args.out}")


def _assignment_from_samples(args: argparse.Namespace, peft: str):
    from transmod.assignment import assign_correlation
    from transmod.correlation import correlate_samples
    from transmod.samplefile import SampleFile
    from transmod.sampling import sample_model
    from transmod.texts import read_texts

    examples = read_texts(args.samples)
    lora_outputs = peft == "lora" and args.lora_b == "output"
    with tempfile.TemporaryDirectory(prefix="transmod-") as tmp:
        files = {}
        for who, model in (("teacher", args.teacher_model), ("student", args.student_model)):
            files[who] = Path(tmp) / f"{who}.parquet"
            sample_model(model, examples, {peft: files[who]}, max_tokens=args.max_tokens, lora_outputs=lora_outputs)
        teacher, student = SampleFile.open(files["teacher"]), SampleFile.open(files["student"])
        return assign_correlation(correlate_samples(teacher, student, args.mapping))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"sample": _sample, "correlate": _correlate, "assign": _assign, "transfer": _transfer}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            handlers[args.command](args)
    except TransmodError as exc:
        print(f"transmod {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
