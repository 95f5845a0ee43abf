"""Peak memory and time of the mix step on two large validated sources.

Usage: python bench/bench_mix.py [--rows 1000000] [--path stream|memory|both] [--json]

Writes two `valid.parquet` files in the layout the validation step writes (prompt as a list
of role/content messages, chosen, rejected, source_row, source_file as a dictionary column),
`--rows` rows each, in this process and a chunk at a time. The second source repeats the
first one's first tenth (duplicates the mix must drop). Then it mixes them (source a at
weight 2, source b at weight 1) in a fresh process per path, so each peak RSS is that mix's
alone: `--path stream` runs `mix_sources`, which reads the sources in record batches;
`--path memory` runs the same selection on whole frames read with `pandas.read_parquet` and
one `pandas.concat`, as the mix did before it streamed. Reports seconds, the peak RSS of the
mixing process (VmHWM; ru_maxrss too, which on Linux cannot fall below the size of the process
that started it) and its RSS after imports.
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
CHUNK = 50_000


def write_source(path: Path, rows: int, tag: str, repeat: tuple[str, int] = ("", 0)) -> None:
    """`rows` synthetic valid rows; the first `repeat[1]` rows are those of source `repeat[0]`."""
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simpo_core.data.synthetic import generate_pairs

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema(
        [
            ("prompt", pa.list_(message)),
            ("chosen", pa.large_string()),
            ("rejected", pa.large_string()),
            ("source_row", pa.int64()),
            ("source_file", pa.dictionary(pa.int32(), pa.string())),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, CHUNK):
            count = min(CHUNK, rows - start)
            source = repeat[0] if start < repeat[1] else tag  # repeated rows are generated alike
            pairs = generate_pairs(count, 0.3, seed=2 * start + (source != "a"))
            columns = {
                "prompt": [
                    [{"role": "user", "content": f"{p['prompt']} (#{source}{start + i})"}] for i, p in enumerate(pairs)
                ],
                "chosen": [p["chosen"] for p in pairs],
                "rejected": [p["rejected"] for p in pairs],
                "source_row": list(range(start + 1, start + count + 1)),
                "source_file": pa.DictionaryArray.from_arrays(
                    pa.array([0] * count, pa.int32()), pa.array([f"/data/{tag}.jsonl"])
                ),
            }
            writer.write_table(pa.table(columns, schema=schema))


def mix_in_memory(parts: list, out_path: Path, salt: str) -> int:
    """The mix as it was before it streamed: whole frames, a Python set of digests, one concat."""
    import numpy as np
    import pandas as pd

    from simpo_core.data.mix import SOURCE_COLUMN, prompt_positions, weighted_counts
    from simpo_core.data.validation_stream import pair_digests

    frames, picks, seen = [], [], set()
    for spec, valid_path in parts:
        frame = pd.read_parquet(valid_path)
        digests = pair_digests(frame)
        fresh = np.fromiter((d not in seen for d in digests.tolist()), dtype=bool, count=len(frame))
        seen.update(digests.tolist())
        frames.append((spec, frame, fresh, digests))
    weights = {spec.name: spec.weight for spec, *_ in frames if spec.weight is not None}
    wanted = weighted_counts({spec.name: int(fresh.sum()) for spec, _, fresh, _ in frames}, weights)
    for spec, frame, fresh, digests in frames:
        positions, candidates = prompt_positions(frame, salt), np.flatnonzero(fresh)
        order = np.lexsort((digests[candidates], positions[candidates]))
        chosen = np.sort(candidates[order[: wanted[spec.name]]])
        picks.append(frame.iloc[chosen].assign(**{SOURCE_COLUMN: spec.name}))
    mixed = pd.concat(picks, ignore_index=True)
    mixed["source_file"] = mixed["source_file"].astype("str")
    mixed.to_parquet(out_path, index=False)
    return len(mixed)


def measure(folder: Path, path: str) -> dict:
    """Mix the two sources in `folder` in this process; returns seconds and peak RSS."""
    sys.path.insert(0, str(ROOT))
    from simpo_core.data.mix import MIX_SALT, SourceSpec, mix_sources

    parts = [
        (SourceSpec(source="a", weight=2), folder / "a" / "valid.parquet"),
        (SourceSpec(source="b", weight=1), folder / "b" / "valid.parquet"),
    ]
    baseline = _status_mb("VmRSS")
    start = time.perf_counter()
    if path == "memory":
        rows = mix_in_memory(parts, folder / f"mix-{path}.parquet", MIX_SALT)
    else:
        rows = mix_sources(parts, folder / f"mix-{path}.parquet").rows
    return {
        "path": path,
        "rows": rows,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(_peak_rss_mb()),
        "vm_hwm_mb": round(_status_mb("VmHWM")),
        "baseline_rss_mb": round(baseline),
    }


def _peak_rss_mb() -> float:
    # Linux keeps the forking parent's RSS as a floor of ru_maxrss across exec; VmHWM does not.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _status_mb(key: str) -> float:
    """A `/proc/self/status` figure (VmRSS: now, VmHWM: the peak of this program) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per source")
    parser.add_argument("--path", default="both", choices=("stream", "memory", "both"), help="mix to measure")
    parser.add_argument("--json", action="store_true", help="one JSON line per path on stdout")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1])))
        return 0
    paths = ("stream", "memory") if args.path == "both" else (args.path,)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for tag in ("a", "b"):
            (folder / tag).mkdir()
        start = time.perf_counter()
        write_source(folder / "a" / "valid.parquet", args.rows, "a")
        write_source(folder / "b" / "valid.parquet", args.rows, "b", repeat=("a", args.rows // 10))
        size = sum((folder / tag / "valid.parquet").stat().st_size for tag in ("a", "b")) / 2**20
        print(
            f"two sources of {args.rows} rows ({size:.0f} MB of Parquet) in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
        print(
            f"{'path':>7} {'rows':>9} {'seconds':>8} {'peak RSS MB':>12} {'VmHWM MB':>9} {'base MB':>8}",
            file=sys.stderr,
        )
        for path in paths:
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(folder), path], check=True, capture_output=True, text=True
            )
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(
                f"{path:>7} {result['rows']:>9} {result['seconds']:>8} {result['peak_rss_mb']:>12} "
                f"{result['vm_hwm_mb']:>9} {result['baseline_rss_mb']:>8}",
                file=sys.stderr,
            )
            if args.json:
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
