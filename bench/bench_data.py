"""Data-layer throughput and peak memory: load + validate + audit on synthetic pairs.

Usage: python bench/bench_data.py [--sizes 10000,100000,1000000] [--bias 0.3] [--policy rebalance]
                                  [--path stream|memory|cli]

Each size runs in a fresh process (so peak RSS is that size's alone) on a JSONL file written
beforehand by another process. `--path stream` (default) runs the flow's data steps, the
functions its tasks call in its order: `validate_source` (chunk by chunk), `audit` (reads
valid.parquet; a rebalance rewrites it) and `write_split`; `--path memory` loads the whole
source, then validates it; `--path cli` runs `simpo validate` as a user does, in a process of
its own. Reports rows/s per stage, peak RSS once validation is done
(`val MB`) and at the end (the audit holds the valid rows) as one table and, with --json, one
JSON line per size.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(data: Path, out: Path, policy: str, path: str) -> dict:
    """Run the stages on `data` in this process; returns timings and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from simpo_core.audit.balance import audit, audit_length_balance
    from simpo_core.audit.settings import AuditSettings
    from simpo_core.data.loading import load_preferences
    from simpo_core.data.settings import ValidateSettings
    from simpo_core.data.split import write_split
    from simpo_core.data.validation import validate_preferences
    from simpo_core.data.validation_stream import validate_source
    from simpo_core.tiny_model import build_tiny_tokenizer

    if path == "cli":
        return _measure_cli(data, out)
    tokenizer = build_tiny_tokenizer()
    settings, audit_settings = ValidateSettings(max_invalid_fraction=1.0), AuditSettings(policy=policy)
    baseline_mb = _peak_rss_mb()
    timings = {}
    start = time.perf_counter()
    if path == "memory":
        loaded = load_preferences(str(data))
        timings["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        validation = validate_preferences(loaded, out, settings)
        timings["validate_s"] = time.perf_counter() - start
        del loaded
    else:  # the flow's steps: validate-preferences, audit-length-balance, split-holdout
        validation = validate_source(str(data), out, settings)
        timings["load_validate_s"] = time.perf_counter() - start
    validate_mb = _peak_rss_mb()
    start = time.perf_counter()
    if path == "memory":
        report = audit_length_balance(validation.valid, tokenizer, audit_settings).report
    else:
        report = audit(validation, tokenizer, audit_settings, out / "audit").report
    timings["audit_s"] = time.perf_counter() - start
    if path != "memory":
        start = time.perf_counter()
        write_split(validation.valid_path, out)
        timings["split_s"] = time.perf_counter() - start
    rows = validation.summary["total"]
    total = sum(timings.values())
    return {
        "rows": rows,
        **{k: round(v, 2) for k, v in timings.items()},
        "rows_per_s": {stage[:-2]: round(rows / max(t, 1e-9)) for stage, t in timings.items()}
        | {"all": round(rows / total)},
        "validate_peak_rss_mb": round(validate_mb),
        "peak_rss_mb": round(_peak_rss_mb()),
        "baseline_rss_mb": round(baseline_mb),
        "removed": report["removed"],
    }


def _measure_cli(data: Path, out: Path) -> dict:
    """`simpo validate` as a user runs it, in its own process: its peak RSS and rate."""
    simpo = str(Path(sys.executable).parent / "simpo")
    start = time.perf_counter()
    done = subprocess.run(
        [simpo, "validate", str(data), "--out", str(out), "--max-invalid-fraction", "1", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    rows = json.loads(done.stdout.strip().splitlines()[-1])["total"]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "rows": rows,
        "load_validate_s": round(seconds, 2),
        "rows_per_s": {"load_validate": round(rows / seconds), "audit": "-", "all": round(rows / seconds)},
        "validate_peak_rss_mb": round(peak),
        "peak_rss_mb": round(peak),
        "baseline_rss_mb": "-",
        "removed": 0,
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _write_data(path: Path, n: int, bias: float) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from simpo_core.data.synthetic import generate_pairs, write_jsonl\n"
        f"write_jsonl(generate_pairs({n}, {bias}, seed=0), {str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated pair counts")
    parser.add_argument("--bias", type=float, default=0.3, help="synthetic length bias")
    parser.add_argument("--policy", default="rebalance", choices=("warn", "rebalance"))
    parser.add_argument("--path", default="stream", choices=("stream", "memory", "cli"), help="path to measure")
    parser.add_argument("--json", action="store_true", help="one JSON line per size on stdout")
    parser.add_argument("--child", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), Path(args.child[1]), args.policy, args.path)))
        return 0
    print(f"{args.path} path", file=sys.stderr)
    print(
        f"{'rows':>9} {'load r/s':>10} {'validate r/s':>13} {'audit r/s':>10} {'all r/s':>9} {'val MB':>7} "
        f"{'peak RSS MB':>12} {'base MB':>8}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"pairs-{n}.jsonl"
            _write_data(data, n, args.bias)
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--policy",
                    args.policy,
                    "--path",
                    args.path,
                    "--child",
                    str(data),
                    str(Path(tmp) / f"out-{n}"),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            rates = result["rows_per_s"]
            load, validate = rates.get("load", "-"), rates.get("validate", rates.get("load_validate"))
            print(
                f"{n:>9} {load:>10} {validate:>13} {rates['audit']:>10} {rates['all']:>9} {result['validate_peak_rss_mb']:>7} "
                f"{result['peak_rss_mb']:>12} {result['baseline_rss_mb']:>8}",
                file=sys.stderr,
            )
            if args.json:
                print(json.dumps(result), flush=True)
            data.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
