"""The `transmod` command: sample, correlate, assign, fit-alignment, transfer, fidelity, evaluate, tables. Each step reads and writes files."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from transmod.align.api import DEFAULT_MAX_TOKENS, TransferNotice, transfer
from transmod.align.layermap import mapping_names
from transmod.align.methods import DEFAULT_RIDGE, METHODS, check_method, check_ridge, data_free, dense, grid_methods
from transmod.align.texts import read_texts
from transmod.align.transfer import LORA_B_ALIGNMENTS
from transmod.atomic import WRITTEN, check_output, new_output
from transmod.errors import TransmodError
from transmod.modules.io import MODULE_FORMATS
from transmod.modules.kinds import KINDS
from transmod.train.lmscore import DEFAULT_MAX_LENGTH
from transmod.train.tasks import DECODER_KINDS
from transmod.progress import log_lines

EXAMPLES = {
    "sample": """examples:
  transmod sample --model bert-base-multilingual-cased --peft adapter --data sents.txt --out teacher.parquet
  transmod sample --model models/student --peft lora --data train.parquet --out student.parquet --max-tokens 20000
  # a decoder LLM: residual stream, attention heads and MLP neurons of every layer, from plain text
  transmod sample --model Qwen/Qwen2.5-7B --peft lora --data wiki.txt --out qwen7b.parquet --max-tokens 20000""",
    "correlate": """examples:
  transmod correlate --teacher teacher.parquet --student student.parquet --mapping skip --out corr.safetensors
  # leave the last 20% of the tokens for `transmod fidelity` (as fit-alignment --holdout 0.2 does)
  transmod correlate --teacher teacher.parquet --student student.parquet --mapping skip --holdout 0.2 --out corr.safetensors""",
    "assign": """examples:
  transmod assign --correlation corr.safetensors --out skip.lsa.alignment.safetensors""",
    "transfer": """examples:
  # same width (mBERT -> DistilmBERT): layer mapping only
  transmod transfer --module ner_adapter --teacher-model bert-base-multilingual-cased \\
      --student-model distilbert-base-multilingual-cased --mapping skip --out ner_adapter_student
  # different widths, with a precomputed alignment (`transmod assign` or `transmod fit-alignment`)
  transmod transfer --module ner_lora --teacher-model xlm-roberta-large --student-model xlm-roberta-base \\
      --mapping avg --alignment avg.lsa.alignment.safetensors --out ner_lora_student
  # different widths, one shot: samples, correlates and assigns on the way
  transmod transfer --module ner_lora --teacher-model xlm-roberta-large --student-model xlm-roberta-base \\
      --mapping skip --samples sents.txt --out ner_lora_student
  # a better alignment than the study's permutation, fitted on the way and folded into the weights
  transmod transfer --module ner_adapter --teacher-model xlm-roberta-large --student-model xlm-roberta-base \\
      --mapping skip --samples sents.txt --align procrustes --out ner_adapter_student
  # a LoRA saved by peft, written back in peft's format
  transmod transfer --module peft_lora --teacher-model bert-base-cased --student-model distilbert-base-cased \\
      --mapping skip --format peft --out peft_lora_student
  # decoder LLMs (Llama, Mistral, Qwen2/3, Gemma; across them too): a peft LoRA on q/k/v/o/gate/up/down_proj in one shot
  transmod transfer --module qwen7b_lora --teacher-model Qwen/Qwen2.5-7B --student-model Qwen/Qwen2.5-1.5B \\
      --mapping skip --samples text.txt --align procrustes --out qwen1.5b_lora
  # Llama 3.1 8B -> 3.2 3B, depths 32 -> 28: layers picked by their similarity (linear CKA) on the samples
  transmod transfer --module llama8b_lora --teacher-model meta-llama/Llama-3.1-8B \\
      --student-model meta-llama/Llama-3.2-3B --mapping cka --samples text.txt --out llama3b_lora
  # a bottleneck adapter (adapters' SeqBnConfig) on Llama or Mistral: written in adapters' format
  transmod transfer --module llama8b_adapter --teacher-model meta-llama/Llama-3.1-8B \\
      --student-model meta-llama/Llama-3.2-3B --mapping skip --samples text.txt --out llama3b_adapter
  # no text at hand: the residual stream aligned from the input embeddings of the shared vocabulary
  transmod transfer --module llama8b_lora --teacher-model meta-llama/Llama-3.1-8B \\
      --student-model meta-llama/Llama-3.2-3B --mapping skip --align embed --out llama3b_lora
load the result with: model.load_adapter(OUT)  (adapters; safetensors and plain-tensor .bin are both written)
(--format peft, the default for a decoder LLM's LoRA: PeftModel.from_pretrained(student_model, OUT))""",
    "fit-alignment": """examples:
  transmod fit-alignment --teacher teacher.parquet --student student.parquet --mapping skip \\
      --method linear --holdout 0.2 --out linear.safetensors
  transmod transfer ... --alignment linear.safetensors --out module_student
methods: lsa (the study's permutation), lsa-signed, linear, procrustes, select (data-free)
(embed, data-free from the input embeddings, is computed by `transmod transfer --align embed`)""",
    "fidelity": """examples:
  transmod fidelity --module ner_adapter --transferred ner_adapter_student --teacher teacher.parquet \\
      --student student.parquet --mapping skip --holdout 0.2 --out fidelity.json
fit the alignment with the same --holdout so that the measured tokens were not fitted on""",
    "evaluate": """examples:
  # does the moved LoRA help? the student alone, then with the LoRA, on the same held-out examples
  transmod evaluate --model models/student --task multiple-choice --data arc_test.jsonl
  transmod evaluate --model models/student --module moved_lora --task multiple-choice --data arc_test.jsonl \\
      --out moved.json
  # completions: {"prompt": ..., "completion": ...} per line; loss per answer token and exact match
  transmod evaluate --model models/student --module moved_lora --task completion --data qa.jsonl
columns: completion {prompt, completion}; multiple-choice {question, choices (a list), answer (its index)};
rename them with --prompt-column, --answer-column, --choices-column""",
    "tables": """examples:
  transmod tables results            # the workflow's results folder: tables and figures of the runs finished so far
  transmod tables /scratch/me/results""",
}


def positive(value: str) -> int:
    """argparse type: an integer of at least 1 (0 would silently mean 'no limit' or loop forever)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def ridge(value: str) -> float:
    """argparse type: a finite shrinkage of at least 0 (NaN or inf would make every fitted map NaN)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= number < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {value}")
    return number


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (the full usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


Command = Callable[..., argparse.ArgumentParser]  # makes a verb's parser: (name, help, out=True)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="transmod", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, out: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if out:
            p.add_argument("--overwrite", action="store_true",
                           help="replace an earlier transmod output at --out (anything else there is never touched)")
        return p

    for add in (_sample_verb, _pair_verbs, _transfer_verb, _fidelity_verb, _evaluate_verb, _tables_verb):
        add(command)
    return parser


def _sample_verb(command: Command) -> None:
    p = command("sample", "Write the hidden states each module reads, per layer, to a parquet file.")
    p.add_argument("--model", required=True, help="hub id or local model folder")
    p.add_argument("--peft", required=True, choices=tuple(KINDS), help="module type: decides the hook point")
    p.add_argument("--data", required=True, help="text file (sentence, or tab-separated pair, per line) or task parquet")
    p.add_argument("--out", required=True, help="output .parquet")
    p.add_argument("--max-tokens", type=positive, default=None, help="keep the first N tokens (default: all)")
    p.add_argument("--batch-size", type=positive, default=32)
    p.add_argument("--max-length", type=positive, help="truncate examples to this many tokens (default 128, or what "
                   "the model reads where that is fewer)")
    p.add_argument("--lora-outputs", action="store_true", help="also sample query/value outputs (for --lora-b output)")
    p.add_argument("--dtype", default="float32", help="stored precision, float32 or bfloat16: bfloat16 halves the "
                   "file (a decoder LLM's are large); readers get float32")


def _sample_pair(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher sample parquet")
    p.add_argument("--student", required=True, help="student sample parquet")
    p.add_argument("--mapping", required=True, choices=mapping_names())
    p.add_argument("--batch-size", type=positive, default=2048, help="tokens per streamed batch")
    p.add_argument("--teacher-model", help="check the teacher samples against this model's shape")
    p.add_argument("--student-model", help="check the student samples against this model's shape")
    p.add_argument("--holdout", type=float, default=0.0,
                   help="leave the last fraction of the shared tokens out (for `transmod fidelity`)")


def _pair_verbs(command: Command) -> None:
    """The verbs that read a teacher and a student sample file."""
    p = command("correlate", "Pearson r of every student dim against every teacher dim, per mapped layer.")
    _sample_pair(p)
    p.add_argument("--out", required=True, help="output correlation file (safetensors)")

    p = command("assign", "The study's alignment (lsa): per layer, a teacher dim for each student dim by linear sum assignment.")
    p.add_argument("--correlation", required=True, help="correlation file from `transmod correlate`")
    p.add_argument("--out", required=True, help="output alignment file (safetensors), as fit-alignment writes")

    p = command("fit-alignment", "Fit per-layer maps between the two models' hidden spaces, for transfer --alignment.")
    _sample_pair(p)
    p.add_argument("--method", required=True, metavar="METHOD", help=", ".join(grid_methods()))
    p.add_argument("--out", required=True, help="output alignment file (safetensors)")
    p.add_argument("--ridge", type=ridge, help=f"shrinkage of the {_dense()} maps towards lsa-signed (default "
                   f"{DEFAULT_RIDGE})")


def _dense() -> str:
    return "/".join(m for m in METHODS if dense(m))


def _transfer_verb(command: Command) -> None:
    p = command("transfer", "Move a module saved by `adapters` (or a LoRA saved by `peft`) from the teacher to the student.")
    p.add_argument("--module", required=True, help="module folder written by adapters' save_adapter or peft's save_pretrained")
    p.add_argument("--teacher-model", required=True, help="hub id or local folder of the module's model")
    p.add_argument("--student-model", required=True, help="hub id or local folder of the target model")
    p.add_argument("--mapping", required=True, choices=mapping_names())
    source = p.add_mutually_exclusive_group()
    source.add_argument("--samples", help="text or parquet data: both models are sampled on it and the alignment "
                        "fitted on the way (lsa, or the --align method), for a same-width pair too (without "
                        "--samples or --alignment that pair moves unaligned)")
    source.add_argument("--alignment", "--assignment", dest="alignment",
                        help="alignment file from `transmod assign` or `transmod fit-alignment` (an older assignment "
                        ".json too)")
    p.add_argument("--max-tokens", type=positive, help=f"tokens to sample with --samples (default {DEFAULT_MAX_TOKENS})")
    p.add_argument("--lora-b", default="study", choices=LORA_B_ALIGNMENTS,
                   help="align LoRA B with the input's permutation (study) or with query/value outputs (output)")
    free = [m for m in METHODS if data_free(m)]
    p.add_argument("--align", metavar="METHOD", help=f"alignment method: {', '.join(METHODS)} (default lsa, the "
                   f"study's); {' and '.join(free)} need no data (embed: the input embeddings of the shared vocabulary), "
                   "the others --samples or --alignment")
    p.add_argument("--ridge", type=ridge, help=f"shrinkage of the {_dense()} maps "
                   f"fitted on --samples towards lsa-signed (default {DEFAULT_RIDGE})")
    p.add_argument("--format", default=None, choices=MODULE_FORMATS,
                   help="output layout (peft: LoRA only; default: peft for a decoder LLM's LoRA, adapters otherwise)")
    p.add_argument("--out", required=True, help="output module folder")


def _fidelity_verb(command: Command) -> None:
    p = command("fidelity", "Training-free measure: the transferred module's effect against the teacher module's.")
    p.add_argument("--module", required=True, help="the teacher's module folder (adapters or peft)")
    p.add_argument("--transferred", required=True, help="the transferred module folder")
    p.add_argument("--teacher", required=True, help="teacher sample parquet")
    p.add_argument("--student", required=True, help="student sample parquet")
    p.add_argument("--mapping", required=True, choices=mapping_names())
    p.add_argument("--holdout", type=float, default=0.2, help="measure on the last fraction of the shared tokens")
    p.add_argument("--ridge", type=ridge, default=DEFAULT_RIDGE, help="ridge of the reference map")
    p.add_argument("--batch-size", type=positive, default=2048, help="tokens per streamed batch")
    p.add_argument("--out", required=True, help="output .json")


def _evaluate_verb(command: Command) -> None:
    p = command("evaluate", "Score a decoder LLM, with or without a peft LoRA, on completion or multiple-choice examples.")
    p.add_argument("--model", required=True, help="hub id or local folder of a decoder LLM")
    p.add_argument("--module", help="a peft LoRA folder to load on it (default: the model alone)")
    p.add_argument("--task", required=True, choices=DECODER_KINDS)
    p.add_argument("--data", required=True, help=".jsonl, .json or .parquet file of examples")
    p.add_argument("--prompt-column", help="the prompt's (the question's) column (default prompt / question)")
    p.add_argument("--answer-column", help="the answer's column: its text, or the right choice's index "
                   "(default completion / answer)")
    p.add_argument("--choices-column", help="multiple-choice: the column of answer lists (default choices)")
    p.add_argument("--no-chat", action="store_true", help="plain text even where the tokenizer has a chat template")
    p.add_argument("--batch-size", type=positive, default=8)
    p.add_argument("--max-length", type=positive, default=DEFAULT_MAX_LENGTH, help="tokens per example at most")
    p.add_argument("--out", help="also write the scores and predictions to this .json")


def _tables_verb(command: Command) -> None:
    p = command("tables", "Regenerate the workflow's tables and figures from the runs finished so far (trains nothing).",
                out=False)
    p.add_argument("results", nargs="?", default="results",
                   help="the workflow's results folder, holding plan.json (default: results)")


def _sample(args: argparse.Namespace) -> None:
    from transmod.align.samplefile import check_dtype
    from transmod.align.sampling import sample_model

    check_dtype(args.dtype, "--dtype")  # before any model loads
    inputs = (args.model, args.data)
    check_output(args.out, "samples", inputs, args.overwrite)
    examples = read_texts(args.data)
    with new_output(args.out, "samples", inputs=inputs, overwrite=args.overwrite) as tmp:
        n = sample_model(args.model, examples, {args.peft: tmp}, max_tokens=args.max_tokens,
                         batch_size=args.batch_size, max_length=args.max_length, lora_outputs=args.lora_outputs,
                         dtype=args.dtype)
        if n == 0:
            raise TransmodError(f"{args.data}: no tokens left after removing special tokens; give more text")
    print(f"wrote {n} tokens to {args.out}")


def _open_pair(args: argparse.Namespace, kind: str):
    """The teacher and student sample files of `correlate`/`fit-alignment`, after checking where `--out` goes."""
    from transmod.align.samplefile import SampleFile
    from transmod.modules.architectures import load_model_shape

    inputs = (args.teacher, args.student, args.teacher_model, args.student_model)
    check_output(args.out, kind, inputs, args.overwrite)
    teacher, student = SampleFile.open(args.teacher), SampleFile.open(args.student)
    for sample, model in ((teacher, args.teacher_model), (student, args.student_model)):
        if model:
            sample.check_model(load_model_shape(model))
    return teacher, student, inputs


def _correlate(args: argparse.Namespace) -> None:
    from transmod.align.correlation import correlate_samples

    teacher, student, inputs = _open_pair(args, "correlation")
    corr = correlate_samples(teacher, student, args.mapping, args.batch_size, holdout=args.holdout)
    with new_output(args.out, "correlation", inputs=inputs, overwrite=args.overwrite) as tmp:
        corr.save(tmp)
    print(f"correlated {len(corr.layers)} layer pairs over {corr.num_tokens} tokens ({_paired(corr.paired_share)}) "
          f"into {args.out}")


def _paired(share: float | None) -> str:
    """How much of the text both tokenizations pair (all of it with one tokenizer)."""
    return "paired share not recorded" if share is None else f"{100 * share:.1f} % of the tokens paired"


def _assign(args: argparse.Namespace) -> None:
    from transmod.align.alignment import assign_correlation
    from transmod.align.correlation import Correlation

    check_output(args.out, "alignment", [args.correlation], args.overwrite)
    result = assign_correlation(Correlation.load(args.correlation))
    with new_output(args.out, "alignment", inputs=[args.correlation], overwrite=args.overwrite) as tmp:
        result.save(tmp)
    for la in result.layers:
        print(f"student layer {la.student_layer} <- teacher {la.teacher_layers} [{la.space}]: mean matched r = {la.mean_r:.3f}")


def _transfer(args: argparse.Namespace) -> None:
    with _notices(args.command):
        moved = transfer(args.module, teacher=args.teacher_model, student=args.student_model, mapping=args.mapping,
                         samples=args.samples, alignment=args.alignment, method=args.align, lora_b=args.lora_b,
                         ridge=args.ridge, max_tokens=args.max_tokens, format=args.format, out=args.out,
                         overwrite=args.overwrite)
    used = moved.alignment
    fitted = f" ({used.method} alignment on {used.num_tokens} tokens, {_paired(used.paired_share)})" \
        if used is not None and used.paired_share is not None else ""  # fitted on samples
    print(f"wrote the transferred module to {args.out}{fitted}")


@contextlib.contextmanager
def _notices(command: str) -> Iterator[None]:
    """The library's notices (`TransferNotice`: a warning in a notebook) as one line each on stderr."""
    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message: Warning | str, category: type[Warning], *rest: object, **kwargs: object) -> None:
            if issubclass(category, TransferNotice):
                print(f"transmod {command}: {message}", file=sys.stderr)
            else:
                show(message, category, *rest, **kwargs)

        warnings.showwarning = one_line
        warnings.simplefilter("always", TransferNotice)
        yield


def _fit_alignment(args: argparse.Namespace) -> None:
    from transmod.align.alignment import fit_alignment

    ridge = check_ridge(check_method(args.method), args.ridge, "--method")
    teacher, student, inputs = _open_pair(args, "alignment")
    alignment = fit_alignment(teacher, student, args.mapping, args.method, ridge=ridge, holdout=args.holdout,
                              batch_size=args.batch_size)
    with new_output(args.out, "alignment", inputs=inputs, overwrite=args.overwrite) as tmp:
        alignment.save(tmp)
    print(f"fitted {args.method} maps for {len(alignment.layers)} layer/space pairs on {alignment.num_tokens} tokens "
          f"({_paired(alignment.paired_share)}) into {args.out}")


def _fidelity(args: argparse.Namespace) -> None:
    import json

    from transmod.align.fidelity import sample_shape, transfer_fidelity
    from transmod.align.samplefile import SampleFile
    from transmod.atomic import MARK
    from transmod.modules.io import read_module

    inputs = (args.module, args.transferred, args.teacher, args.student)
    check_output(args.out, "fidelity", inputs, args.overwrite)
    teacher, student = SampleFile.open(args.teacher), SampleFile.open(args.student)
    teacher_module = read_module(args.module, sample_shape(teacher))
    student_module = read_module(args.transferred, sample_shape(student))
    result = transfer_fidelity(teacher_module, student_module, teacher, student, args.mapping, holdout=args.holdout,
                               ridge=args.ridge, batch_size=args.batch_size)
    with new_output(args.out, "fidelity", inputs=inputs, overwrite=args.overwrite) as tmp:
        tmp.write_text(json.dumps({MARK: "fidelity", **result}, indent=1))
    overall = {k: "n/a" if v is None else f"{v:.4g}" for k, v in result["overall"].items()}
    print(f"fidelity of {args.transferred} ({result['method'] or 'unaligned'}) on {result['heldout_tokens']} held-out tokens: "
          f"relative error {overall['rel_error']}, cosine {overall['cosine']}")


def _evaluate(args: argparse.Namespace) -> None:
    import json

    from transmod.atomic import MARK
    from transmod.train.lmscore import load_decoder, read_rows, score_decoder
    from transmod.train.tasks import CHOICE, declare_task

    mc = args.task == CHOICE
    if args.choices_column and not mc:
        raise TransmodError("--choices-column: only a multiple-choice task has choices; drop the option")
    inputs = (args.model, args.module, args.data)
    if args.out:
        check_output(args.out, "evaluation", inputs, args.overwrite)
    task = declare_task("evaluate", dict(
        kind=args.task, text_columns=[args.prompt_column or ("question" if mc else "prompt")],
        label_column=args.answer_column or ("answer" if mc else "completion"),
        choices_column=(args.choices_column or "choices") if mc else None,
        metric="accuracy" if mc else "exact_match"))
    rows = read_rows(args.data)
    model, tokenizer = load_decoder(args.model, args.module)
    try:
        result = score_decoder(model, tokenizer, task, rows, batch_size=args.batch_size, max_length=args.max_length,
                               chat=not args.no_chat)
    except TransmodError as exc:
        raise TransmodError(f"{args.data}: {exc}") from None
    record = {"model": args.model, "module": args.module, "data": args.data, "task": args.task, **result}
    if args.out:
        with new_output(args.out, "evaluation", inputs=inputs, overwrite=args.overwrite) as tmp:
            tmp.write_text(json.dumps({MARK: "evaluation", **record}, indent=1) + "\n", encoding="utf-8")
    scores = ", ".join(f"{k} {result[k]:.4f}" for k in ("accuracy", "exact_match", "loss_per_token") if k in result)
    print(f"{args.model}{' + ' + args.module if args.module else ''} on {result['examples']} examples of "
          f"{args.data}: {scores}")


def _tables(args: argparse.Namespace) -> None:
    from transmod.results.tables import write_results

    written = write_results(args.results)
    print(f"wrote {len(written)} table and figure files under {Path(args.results) / 'tables'} and "
          f"{Path(args.results) / 'plots'}")


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a cluster's scancel, a timeout) raised like Ctrl-C, so that every temporary is removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log_lines(sys.stderr, fmt="transmod: %(message)s")  # progress of long steps (a bar too on a terminal)
    handlers = {"sample": _sample, "correlate": _correlate, "assign": _assign, "transfer": _transfer,
                "fit-alignment": _fit_alignment, "fidelity": _fidelity, "evaluate": _evaluate, "tables": _tables}
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.simplefilter("ignore", ResourceWarning)  # an interrupted import's open file is no news to a user
            handlers[args.command](args)
    except (TransmodError, OSError) as exc:  # bad input, or a file system that refused (permissions, full disk)
        print(f"transmod {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        done = f"{WRITTEN[-1]} was written whole before that" if WRITTEN else "nothing was written"
        print(f"transmod {args.command}: interrupted; {done}", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
