"""Benchmark: correlate + assign on XLM-R large -> base shapes, against the study's per-dimension method.

Prints figures; it is not a test. Run from the repository root with the project's venv:

    python benchmarks/bench_correlate.py            # full run (50k and 200k tokens, several minutes)
    python benchmarks/bench_correlate.py --quick    # smoke run (< 1 minute, small token counts)

What it does, on one set of synthetic activations written as real sample parquet files
(teacher: 24 layers x 1024 dims, student: 12 layers x 768 dims, SKIP mapping):

* fast method = the project's own code path, `correlate_samples(SampleFile.open(teacher),
  SampleFile.open(student), "skip")` then `assign_correlation(...)`, each measurement in a fresh
  child process: the timed run without tracemalloc, then one run per token count for memory (peak
  RSS = the child's VmHWM; numpy peak via tracemalloc; Arrow memory pool peak). The machine may be shared, so a child whose RSS passes --mem-cap-gib is
  killed and reported as such;
* reference method = the study's public code approach: per student dimension one
  `sklearn.feature_selection.r_regression(teacher_matrix, student[:, i])` call against the full
  teacher matrix (n x 1024), stacked into 768 x 1024, then `linear_sum_assignment(-C)`. It takes
  minutes per layer pair, so it is timed on a subset of student dimensions of a few layer pairs
  and scaled linearly to 12 x 768 dimensions (the output says so);
* agreement: the reference rows that were computed are compared with the fast method's rows, and
  on a reduced case (the first few thousand tokens of the same data) the full reference matrix of
  one or more layer pairs is computed and both assignments are compared exactly; both are also
  compared with the planted (known) assignment of the synthetic data.

The reference method and the full reference check need scikit-learn, which the project does not
require; without it they are skipped (`pip install scikit-learn==1.9.1` runs them).

Synthetic data: per teacher layer, unit-variance noise plus a shared low-rank part (so teacher
dims are correlated with each other, as in real models) and a few outlier dims with large mean
and scale; each student dim i of layer l is a noisy, scaled and shifted copy of teacher dim
planted[l][i] of teacher layer 2l (planted correlations 0.25 to 0.9). Odd teacher layers are
never read under SKIP; they are written as zeros (compressed) to keep the files small, which
does not change what the fast method reads (parquet reads only the requested columns).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from transmod.align.samplefile import SampleWriter, from_vectors

T_LAYERS, T_HIDDEN = 24, 1024  # XLM-R large
S_LAYERS, S_HIDDEN = 12, 768  # XLM-R base
CHUNK = 5000  # tokens generated and written per row group
RANK = 8  # shared low-rank structure in the teacher
SEED = 1234


# --------------------------------------------------------------------------- synthetic data


def skip_teacher_layer(l: int) -> int:
    return (l * T_LAYERS) // S_LAYERS


def planted(seed: int = SEED) -> dict:
    """The known structure: per student layer, which teacher dim each student dim copies, and how.

    Teacher dim j = mean_j + scale_j * (u_j + factors @ mix[:, j]) with u unit-variance noise;
    student dim i = s_mean_i + gain_i * (z_sigma(i) standardised + noise_i * u'_i), so the planted
    pair has r = 1 / sqrt(1 + noise_i**2), drawn in 0.25..0.9.
    """
    rng = np.random.default_rng([seed, 0])
    out = {"sigma": [], "t_coef": [], "t_mix": [], "t_const": [], "s_noise": [], "s_coef": [], "s_const": []}
    for _ in range(S_LAYERS):
        sigma = rng.permutation(T_HIDDEN)[:S_HIDDEN]
        r = rng.uniform(0.25, 0.9, S_HIDDEN)
        gain = rng.uniform(0.5, 3.0, S_HIDDEN)
        s_mean = rng.normal(0.0, 2.0, S_HIDDEN)
        t_mean = rng.normal(0.0, 0.5, T_HIDDEN)
        t_scale = rng.uniform(0.5, 2.0, T_HIDDEN)
        outliers = rng.choice(T_HIDDEN, 4, replace=False)  # a few huge dims, as in real transformers
        t_mean[outliers] = rng.choice([-1, 1], 4) * rng.uniform(20, 60, 4)
        t_scale[outliers] *= 15
        mix = rng.normal(0.0, 0.35, (RANK, T_HIDDEN))
        t_sd = t_scale * np.sqrt(1.0 + (mix**2).sum(0))
        noise = np.sqrt(1.0 / r**2 - 1.0)
        # uniform noise u = (v - 0.5) * sqrt(12), v ~ U(0, 1): fold the affine parts into coefficients.
        out["sigma"].append(sigma)
        out["t_coef"].append((np.sqrt(12.0) * t_scale).astype(np.float32))
        out["t_mix"].append((mix * t_scale).astype(np.float32))
        out["t_const"].append((t_mean - 0.5 * np.sqrt(12.0) * t_scale).astype(np.float32))
        out["s_noise"].append((np.sqrt(12.0) * noise * gain).astype(np.float32))
        out["s_coef"].append((gain / t_sd[sigma]).astype(np.float32))
        out["s_const"].append(
            (s_mean - gain * t_mean[sigma] / t_sd[sigma] - 0.5 * np.sqrt(12.0) * noise * gain).astype(np.float32)
        )
    return out


class ChunkMaker:
    """Draws the teacher states of the SKIP-mapped layers and the student states, chunk by chunk.

    Seeded by the chunk index, so the first k chunks are the same for every token count. The noise
    is uniform (Pearson does not care about the distribution; it is 6x cheaper to draw than normal).
    Buffers are reused across chunks (fresh allocations cost more in page faults than the maths).
    """

    def __init__(self, plant: dict) -> None:
        self.plant = plant
        self.t_buf = np.empty((S_LAYERS, CHUNK, T_HIDDEN), np.float32)
        self.v_buf = np.empty((CHUNK, T_HIDDEN), np.float32)
        self.s_buf = np.empty((S_LAYERS, CHUNK, S_HIDDEN), np.float32)
        self.g_buf = np.empty((CHUNK, S_HIDDEN), np.float32)

    def __call__(self, chunk_index: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(teacher layers x n x 1024, student layers x n x 768); valid until the next call."""
        plant, rng = self.plant, np.random.default_rng([SEED, 1, chunk_index])
        teacher, student = self.t_buf[:, :n], self.s_buf[:, :n]
        v, g = self.v_buf[:n], self.g_buf[:n]
        for l in range(S_LAYERS):
            z, s = teacher[l], student[l]
            factors = rng.standard_normal((n, RANK), dtype=np.float32)
            np.matmul(factors, plant["t_mix"][l], out=z)
            rng.random(out=v, dtype=np.float32)
            v *= plant["t_coef"][l]
            z += v
            z += plant["t_const"][l]
            rng.random(out=s, dtype=np.float32)
            s *= plant["s_noise"][l]
            np.take(z, plant["sigma"][l], axis=1, out=g)
            g *= plant["s_coef"][l]
            s += g
            s += plant["s_const"][l]
        return teacher, student


def write_samples(directory: Path, num_tokens: int, plant: dict) -> tuple[Path, Path, float]:
    """Write teacher.parquet and student.parquet with the project's SampleWriter, streaming chunks."""
    directory.mkdir(parents=True, exist_ok=True)
    t_path, s_path = directory / "teacher.parquet", directory / "student.parquet"

    def meta(num_layers: int, hidden: int, model: str) -> dict:
        return {"model": model, "model_type": "xlm-roberta", "hook": "adapter", "spaces": ["h"], "num_layers": num_layers,
                "layers": list(range(num_layers)), "hidden_size": hidden, "num_tokens": num_tokens,
                "data": "synthetic", "tokenizer": model, "max_length": 128}

    # The odd teacher layers, never read under SKIP, hold zeros, zstd-compressed to nothing; the
    # columns that are read are written as `transmod sample` writes them (uncompressed).
    used = {skip_teacher_layer(l) for l in range(S_LAYERS)}
    t_columns = [f"h{l}" for l in range(T_LAYERS)]
    s_columns = [f"h{l}" for l in range(S_LAYERS)]
    t_compression = {c: "none" if l in used else "zstd" for l, c in enumerate(t_columns)}
    started = time.perf_counter()
    with SampleWriter(t_path, t_columns, T_HIDDEN, t_compression) as tw, SampleWriter(s_path, s_columns, S_HIDDEN) as sw:
        make = ChunkMaker(plant)
        zeros = np.zeros((CHUNK, T_HIDDEN), np.float32)
        for c, first in enumerate(range(0, num_tokens, CHUNK)):
            n = min(CHUNK, num_tokens - first)
            teacher, student = make(c, n)
            keys = {"sent": np.arange(first, first + n, dtype=np.int32), "seq": np.zeros(n, np.int8),
                    "start": np.zeros(n, np.int32), "end": np.ones(n, np.int32), "token": ["x"] * n}
            tw.write(keys, {f"h{l}": teacher[l // 2] if l in used else zeros[:n] for l in range(T_LAYERS)})
            sw.write(keys, {f"h{l}": student[l] for l in range(S_LAYERS)})
        tw.finish(meta(T_LAYERS, T_HIDDEN, "synthetic/xlm-roberta-large"))
        sw.finish(meta(S_LAYERS, S_HIDDEN, "synthetic/xlm-roberta-base"))
    return t_path, s_path, time.perf_counter() - started


def read_layer(path: Path, layer: int) -> np.ndarray:
    """One layer column as an (n x hidden) float32 matrix (for the reference method)."""
    return from_vectors(pq.read_table(path, columns=[f"h{layer}"]).column(0).combine_chunks())


# --------------------------------------------------------------------------- the two methods


def run_fast(t_path: Path, s_path: Path, track_numpy: bool) -> dict:
    """The project's code path; returns times, memory and the result (call in a fresh process)."""
    import tracemalloc

    from transmod.align.alignment import assign_correlation
    from transmod.align.correlation import correlate_samples
    from transmod.align.samplefile import SampleFile

    pool = pa.default_memory_pool()
    rss_before = peak_rss()
    if track_numpy:
        tracemalloc.start()
    t0 = time.perf_counter()
    corr = correlate_samples(SampleFile.open(t_path), SampleFile.open(s_path), "skip")
    t1 = time.perf_counter()
    assignment = assign_correlation(corr)
    t2 = time.perf_counter()
    numpy_peak = tracemalloc.get_traced_memory()[1] if track_numpy else None
    if track_numpy:
        tracemalloc.stop()
    return {
        "correlate_s": t1 - t0, "assign_s": t2 - t1, "total_s": t2 - t0, "num_tokens": corr.num_tokens,
        "rss_before": rss_before, "rss_peak": peak_rss(),
        "numpy_peak": numpy_peak, "arrow_peak": pool.max_memory(), "arrow_backend": pool.backend_name,
        "corr": corr, "assignment": assignment,
    }


def _child(args: argparse.Namespace) -> None:
    """Child-process entry: run the fast method once, save figures, sigmas and requested r rows."""
    res = run_fast(Path(args.child_teacher), Path(args.child_student), track_numpy=args.child_tracemalloc)
    corr, assignment = res.pop("corr"), res.pop("assignment")
    out = Path(args.child_out)
    out.with_suffix(".json").write_text(json.dumps(res))
    rows = json.loads(args.child_rows)  # {student layer: [dims]}
    arrays = {f"sigma{la.student_layer}": np.asarray(la.sigma) for la in assignment.layers}
    arrays.update({f"r{lc.student_layer}": lc.r[rows[str(lc.student_layer)]] for lc in corr.layers if str(lc.student_layer) in rows})
    np.savez(out.with_suffix(".npz"), **arrays)


def peak_rss() -> int:
    """This process's peak resident set size in bytes: VmHWM, which (unlike getrusage's ru_maxrss on
    Linux) does not inherit the parent's peak across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fast_in_child(
    t_path: Path, s_path: Path, workdir: Path, tag: str, rows: dict, tracemalloc_on: bool, cap: float
) -> tuple[dict | None, dict | None, int]:
    """Run the fast method in a fresh process; kill it if its RSS passes `cap` bytes (the machine is
    shared). Returns (figures, arrays, highest RSS seen from outside); figures is None if killed."""
    out = workdir / f"fast_{tag}"
    cmd = [
        sys.executable, os.path.abspath(__file__), "--child-teacher", str(t_path), "--child-student", str(s_path),
        "--child-out", str(out), "--child-rows", json.dumps({str(k): v for k, v in rows.items()}),
    ]
    if tracemalloc_on:
        cmd.append("--child-tracemalloc")
    child = subprocess.Popen(cmd)
    seen = 0
    while child.poll() is None:
        seen = max(seen, _rss(child.pid))
        if seen > cap:
            child.kill()
            child.wait()
            return None, None, seen
        time.sleep(0.05)
    if child.returncode != 0:
        raise RuntimeError(f"the fast-method child failed with exit status {child.returncode}")
    figures = json.loads(out.with_suffix(".json").read_text())
    with np.load(out.with_suffix(".npz")) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return figures, arrays, seen


def reference_rows(teacher: np.ndarray, student: np.ndarray, dims) -> tuple[np.ndarray, list[float]]:
    """The study's method: one r_regression call per student dim against the full teacher matrix."""
    from sklearn.feature_selection import r_regression

    rows, times = [], []
    for i in dims:
        t0 = time.perf_counter()
        rows.append(r_regression(teacher, student[:, i]))
        times.append(time.perf_counter() - t0)
    return np.stack(rows), times


# --------------------------------------------------------------------------- reporting


def gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def mib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.0f} MiB"


def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 60


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=50_000, help="tokens of the speed comparison (default 50000)")
    p.add_argument("--big-tokens", type=int, default=200_000, help="second token count for peak memory (default 200000)")
    p.add_argument("--ref-dims", type=int, default=16, help="student dims per layer timed with the reference (default 16)")
    p.add_argument("--ref-layers", default="0,11", help="student layers timed with the reference (default 0,11)")
    p.add_argument("--check-tokens", type=int, default=5000, help="tokens of the full-reference assignment check (default 5000)")
    p.add_argument("--check-layers", default="11", help="student layers given a full reference matrix in the check (default 11)")
    p.add_argument("--mem-cap-gib", type=float, default=12.0,
                   help="kill a fast-method run whose RSS passes this (default 12, or 80%% of available memory if less)")
    p.add_argument("--quick", action="store_true", help="smoke run (< 1 min): 5k/10k tokens, 4 ref dims, 1k-token check")
    p.add_argument("--workdir", help="parent directory of the temporary sample files (default: the system temp dir)")
    p.add_argument("--child-teacher", help=argparse.SUPPRESS)
    p.add_argument("--child-student", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    p.add_argument("--child-rows", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--child-tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_out:
        _child(args)
        return
    if args.quick:
        args.tokens, args.big_tokens, args.ref_dims, args.check_tokens = 5000, 10_000, 4, 1000
    args.ref_layers = [int(x) for x in args.ref_layers.split(",")]
    args.check_layers = [int(x) for x in args.check_layers.split(",")]

    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="bench_correlate_", dir=args.workdir))
    try:
        report(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s; {load()} (temporary files removed)")


def optional_sklearn():
    """scikit-learn if installed: only the reference method needs it, and the project does not require it."""
    try:
        import sklearn
    except ImportError:
        return None
    return sklearn


def print_setup(sklearn) -> None:
    """What is compared, on what machine and library versions, and how the synthetic data is made."""
    import scipy

    print("== transmod correlate + assign benchmark (XLM-R large -> base shapes, SKIP) ==")
    print(f"teacher {T_LAYERS} layers x {T_HIDDEN} dims, student {S_LAYERS} layers x {S_HIDDEN} dims, "
          f"student layer l <- teacher layer 2l")
    print(f"{os.cpu_count()} cpus, {load()}; numpy {np.__version__}, scipy {scipy.__version__}, "
          f"sklearn {sklearn.__version__ if sklearn else 'not installed'}, pyarrow {pa.__version__}")
    print("synthetic activations: each student dim a noisy scaled copy of one teacher dim (planted assignment, "
          "r 0.25..0.9); teacher dims share a low-rank part, 4 outlier dims per layer (|mean| 20..60)")
    print("sample parquet written with the project's SampleWriter (as `transmod sample` writes them), "
          f"row groups of {CHUNK} tokens; odd teacher layers (never read under SKIP) hold zeros")


def write_reported(directory: Path, num_tokens: int, plant: dict) -> tuple[Path, Path]:
    """`write_samples`, printing the files' size against the float32 data SKIP reads from them."""
    t_path, s_path, wt = write_samples(directory, num_tokens, plant)
    data = num_tokens * (T_LAYERS // 2 * T_HIDDEN + S_LAYERS * S_HIDDEN) * 4
    print(f"wrote {num_tokens} tokens ({gib(t_path.stat().st_size + s_path.stat().st_size)} of parquet; "
          f"{gib(data)} of float32 in the layers SKIP reads) in {wt:.0f} s")
    return t_path, s_path


def read_pair(t_path: Path, s_path: Path, l: int) -> tuple[np.ndarray, np.ndarray]:
    """Student layer `l` and the teacher layer SKIP maps to it, as the reference method reads them."""
    return read_layer(t_path, skip_teacher_layer(l)), read_layer(s_path, l)


def report_reference(args: argparse.Namespace, t_path: Path, s_path: Path, ref_dims: dict, fast: dict,
                     fast_arrays: dict) -> None:
    """Time the study's method on a few dims, extrapolate to all of them, and compare its rows with the fast ones."""
    print("\n-- reference method (the study's public code): one sklearn r_regression(teacher n x 1024, student[:, i]) "
          "call per student dim, then linear_sum_assignment(-C) --")
    ref_times, ref_diff = [], 0.0
    for l in args.ref_layers:
        teacher, student = read_pair(t_path, s_path, l)
        reference_rows(teacher, student, [0])  # warm-up call, not timed
        rows, times = reference_rows(teacher, student, ref_dims[l])
        ref_times += times
        ref_diff = max(ref_diff, float(np.abs(rows - fast_arrays[f"r{l}"]).max()))
        del teacher, student
    per_dim = float(np.mean(ref_times))
    lsa_s = fast["assign_s"]  # the same linear_sum_assignment calls in both methods
    ref_total = per_dim * S_HIDDEN * S_LAYERS + lsa_s
    print(f"MEASURED: {len(ref_times)} r_regression calls ({args.ref_dims} random student dims of each of student layers "
          f"{args.ref_layers}) on the same {args.tokens}-token data, held in memory as float32 (loading not counted): "
          f"{per_dim:.3f} s per dim (min {min(ref_times):.3f}, max {max(ref_times):.3f}); {load()}")
    print(f"EXTRAPOLATED (linear in the number of dims): {S_LAYERS} layers x {S_HIDDEN} dims = {S_LAYERS * S_HIDDEN} calls "
          f"= {per_dim * S_HIDDEN * S_LAYERS:.0f} s ({per_dim * S_HIDDEN / 60:.1f} min per layer pair), "
          f"+ {lsa_s:.1f} s of linear_sum_assignment (taken equal to the fast method's) = {ref_total:.0f} s")
    speedup = ref_total / fast["total_s"]
    print(f"SPEEDUP at {args.tokens} tokens (extrapolated reference / measured fast): {speedup:.0f}x "
          f"-> {'MEETS' if speedup >= 200 else 'DOES NOT MEET'} the >= 200x target")
    print(f"agreement on the {len(ref_times)} reference rows computed above: max |r_reference - r_fast| = {ref_diff:.2e} "
          f"({'<=' if ref_diff <= 1e-6 else 'ABOVE'} 1e-6)")


def full_reference_check(args: argparse.Namespace, base: Path, plant: dict) -> None:
    """On a few thousand tokens, the study's full matrix and assignment of whole layers against the fast method's."""
    from scipy.optimize import linear_sum_assignment

    from transmod.align.alignment import assign_correlation
    from transmod.align.correlation import correlate_samples
    from transmod.align.samplefile import SampleFile

    check_dir = base / f"n{args.check_tokens}"
    ct_path, cs_path, _ = write_samples(check_dir, args.check_tokens, plant)
    corr = correlate_samples(SampleFile.open(ct_path), SampleFile.open(cs_path), "skip")
    small = assign_correlation(corr)
    for l in args.check_layers:
        teacher, student = read_pair(ct_path, cs_path, l)
        t0 = time.perf_counter()
        c_ref, _ = reference_rows(teacher, student, range(S_HIDDEN))
        rows, cols = linear_sum_assignment(-c_ref)
        sigma_ref = np.empty(S_HIDDEN, np.int64)
        sigma_ref[rows] = cols
        ref_s = time.perf_counter() - t0
        sigma_fast = small.get(l).sigma
        diff = float(np.abs(c_ref - corr.layers[l].r).max())
        same = int((sigma_fast == sigma_ref).sum())
        print(f"full reference check on the first {args.check_tokens} tokens of the same data (a reduced case: the full "
              f"reference at {args.tokens} tokens is not affordable), student layer {l} <- teacher layer "
              f"{skip_teacher_layer(l)}: full {S_HIDDEN} x {T_HIDDEN} reference matrix + LSA ({ref_s:.0f} s) vs the fast "
              f"method on files of those {args.check_tokens} tokens: max |r diff| = {diff:.2e}; assignments agree on "
              f"{same}/{S_HIDDEN} dims -> {'SAME ASSIGNMENT' if same == S_HIDDEN else 'DIFFERENT ASSIGNMENT'}; "
              f"vs planted: fast {int((sigma_fast == plant['sigma'][l]).sum())}/{S_HIDDEN}, "
              f"reference {int((sigma_ref == plant['sigma'][l]).sum())}/{S_HIDDEN}")
    shutil.rmtree(check_dir, ignore_errors=True)


def planted_match(arrays: dict, plant: dict) -> list[int]:
    """Per student layer, how many dims the fast assignment gives the planted teacher dim."""
    return [int((arrays[f"sigma{l}"] == plant["sigma"][l]).sum()) for l in range(S_LAYERS)]


def report_memory(args: argparse.Namespace, base: Path, plant: dict, main_files: tuple[Path, Path], cap: float,
                  fast: dict) -> None:
    """Peak memory at the two token counts, each in a fresh process: it should not grow with the tokens."""
    print("\n-- peak memory of the fast method (fresh process each; peak RSS = VmHWM of the child; "
          "numpy = tracemalloc peak; Arrow = default pool max_memory) --")
    small, _, small_seen = fast_in_child(*main_files, base, "small", {}, True, cap)
    rows_out = {args.tokens: (small, small_seen)}
    shutil.rmtree(main_files[0].parent, ignore_errors=True)
    tp, sp = write_reported(base / f"n{args.big_tokens}", args.big_tokens, plant)
    big, big_arrays, big_seen = fast_in_child(tp, sp, base, "big", {}, True, cap)
    rows_out[args.big_tokens] = (big, big_seen)
    for n, (figures, seen_n) in rows_out.items():
        if figures is None:
            print(f"{n:>7} tokens: KILLED when its RSS passed the {gib(cap)} cap ({gib(seen_n)} seen): "
                  f"peak memory grows with the token count")
            continue
        print(f"{n:>7} tokens: peak RSS {mib(figures['rss_peak'])} (after imports {mib(figures['rss_before'])}); "
              f"numpy peak {mib(figures['numpy_peak'])}; Arrow pool peak ({figures['arrow_backend']}) "
              f"{mib(figures['arrow_peak'])}; fast method {figures['total_s']:.1f} s")
    if big is not None and small is not None:
        match = sum(planted_match(big_arrays, plant))
        ratio = big["rss_peak"] / small["rss_peak"]
        print(f"peak RSS ratio {args.big_tokens} / {args.tokens} tokens: {ratio:.2f} for x{args.big_tokens / args.tokens:.0f} "
              f"the tokens (numpy {big['numpy_peak'] / small['numpy_peak']:.2f}, Arrow "
              f"{big['arrow_peak'] / small['arrow_peak']:.2f}) -> peak memory "
              f"{'DOES NOT GROW' if ratio < 1.1 else 'GROWS'} with the token count; "
              f"fast assignment at {args.big_tokens} tokens vs planted: {match}/{S_LAYERS * S_HIDDEN}")
    else:
        print(f"peak RSS ratio {args.big_tokens} / {args.tokens} tokens: >= {big_seen / (small or fast)['rss_peak']:.2f} "
              f"(the run was killed) -> peak memory GROWS with the token count")


def report(args: argparse.Namespace, base: Path) -> None:
    """Every section in turn; none after the fast method if it had to be killed (no figures to compare)."""
    cap = min(args.mem_cap_gib * 2**30, 0.8 * mem_available())
    sklearn = optional_sklearn()
    print_setup(sklearn)
    plant = planted()
    rng = np.random.default_rng([SEED, 2])
    ref_dims = {l: np.sort(rng.choice(S_HIDDEN, args.ref_dims, replace=False)).tolist() for l in args.ref_layers}

    print()
    t_path, s_path = write_reported(base / f"n{args.tokens}", args.tokens, plant)

    print("\n-- fast method: transmod.align.correlation.correlate_samples + transmod.align.alignment.assign_correlation --")
    fast, fast_arrays, seen = fast_in_child(t_path, s_path, base, "main", ref_dims, False, cap)
    if fast is None:
        print(f"killed: its RSS passed the {gib(cap)} cap ({gib(seen)} seen) at {args.tokens} tokens; no figures")
        return
    print(f"{args.tokens} tokens: correlate {fast['correlate_s']:.1f} s + assign {fast['assign_s']:.1f} s "
          f"= {fast['total_s']:.1f} s (12 layer pairs; parquet reading included; fresh process, no tracemalloc); {load()}")

    if sklearn is None:
        print("\n-- reference method skipped: scikit-learn is not installed "
              "(`pip install scikit-learn==1.9.1` runs it and the full reference check) --")
    else:
        report_reference(args, t_path, s_path, ref_dims, fast, fast_arrays)

    print("\n-- assignment --")
    match = planted_match(fast_arrays, plant)
    print(f"fast assignment at {args.tokens} tokens vs the planted one: {sum(match)}/{S_LAYERS * S_HIDDEN} dims "
          f"(per layer: {', '.join(map(str, match))})")
    if sklearn is not None:  # the full reference check needs r_regression
        full_reference_check(args, base, plant)
    report_memory(args, base, plant, (t_path, s_path), cap, fast)


if __name__ == "__main__":
    main()
