"""What the ingestion ledger costs: fingerprint, distinct points, read-back, SQLite.

    .venv/bin/python bench/bench_ledger.py [--repeat 3] [--days 10] [--big-rows 50000] [--json]

1. Client side, no server, on the files of bench_ingest's tree (10 devices x
   --days daily files of 145 rows x 30 channels): parse + encode + stats, then
   the same plus what the ledger adds to every file (SHA-256 through
   `ledger.Fingerprint`, `stats.DistinctPoints`). Least CPU of --repeat.
2. Into a fresh throwaway InfluxDB each run, alternately: `ingest_paths` as
   `powerview ingest` runs it, without a ledger and with one (a Recorder on a
   fresh SQLite ledger, counting back through Flux). Per file: the time of the
   read-back query and of the SQLite record. Best wall of --repeat each.
3. One large file (--big-rows rows x 30 channels) ingested with the ledger:
   its read-back query time, which grows with the file's points.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import (
    BATCH_ROWS,
    Servers,
    TreeShape,
    generate_tree,
    measured,
    tree_copy,
    tree_files,
)
from bench.common import export_of_rows, machine, mvals, print_json, table, wait_for_quiet, work_dir
from powerview.formats import ParseOptions, open_device_file
from powerview.influx import InfluxTarget, make_client
from powerview.ingest import IngestOptions, encode_file, ingest_paths
from powerview.ledger import FluxVerifier, Ledger, LedgerRow, Recorder
from powerview.stats import DistinctPoints, FileStats


class TimedVerifier(FluxVerifier):
    """The real read-back, timed: per file, its share of its query's time."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.times: list[float] = []
        self.queries = 0

    def count(self, rows: Sequence[LedgerRow]) -> list[int]:
        started = time.perf_counter()
        try:
            return super().count(rows)
        finally:
            # A query counts several files: each gets its share of the query's time.
            share = (time.perf_counter() - started) / max(1, len(rows))
            self.times.extend([share] * len(rows))
            self.queries += 1


class TimedLedger(Ledger):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.times: list[float] = []

    def record(self, row: LedgerRow) -> int:
        started = time.perf_counter()
        try:
            return super().record(row)
        finally:
            self.times.append(time.perf_counter() - started)


def client_pass(files: list[Path], ledger_work: bool) -> tuple[float, int]:
    """CPU seconds of parse + encode + stats (+ fingerprint + distinct points)."""
    values = 0
    started = time.process_time()
    for path in files:
        with path.open("rb") as raw, open_device_file(raw, ParseOptions()) as device_file:
            width = len(device_file.header.columns)
            stats = FileStats(width)
            distinct = DistinctPoints(width) if ledger_work else None
            for batch, _ in encode_file(device_file, "c", BATCH_ROWS):
                stats.add(batch)
                if distinct is not None:
                    distinct.add(batch)
                values += len(batch.values)
            if ledger_work:
                raw.seek(0)
                hashlib.file_digest(raw, "sha256")  # what Fingerprint hashes, in one go
                assert distinct is not None
                _ = distinct.count
    return time.process_time() - started, values


def fingerprint_pass(files: list[Path]) -> float:
    """CPU seconds of the parse read through `ledger.Fingerprint` (the real path)."""
    from typing import BinaryIO, cast

    from powerview.ledger import Fingerprint

    started = time.process_time()
    for path in files:
        with (
            Fingerprint(path.open("rb")) as raw,
            open_device_file(cast(BinaryIO, raw), ParseOptions()) as device_file,
        ):
            for _ in encode_file(device_file, "c", BATCH_ROWS):
                pass
            raw.finish(1 << 30)
    return time.process_time() - started


def plain_pass(files: list[Path]) -> float:
    started = time.process_time()
    for path in files:
        with path.open("rb") as raw, open_device_file(raw, ParseOptions()) as device_file:
            for _ in encode_file(device_file, "c", BATCH_ROWS):
                pass
    return time.process_time() - started


def server_run(
    servers: Servers, pristine: Path, scratch: Path, with_ledger: bool
) -> dict[str, Any]:
    with tree_copy(pristine, scratch, "ingest") as root, servers.fresh() as server:
        client = make_client(server.url, server.token, server.org, 60)
        target = InfluxTarget(client, server.org, gzip_level=0)
        recorder = None
        if with_ledger:
            ledger_dir = scratch / "state"
            shutil.rmtree(ledger_dir, ignore_errors=True)
            recorder = Recorder(TimedLedger(ledger_dir / "ledger.sqlite3"), TimedVerifier(client))
        options = IngestOptions(data_root=root, parse=ParseOptions(), ledger=recorder)
        with measured(server) as m:
            run = ingest_paths(tree_files(root), target, options)
        target.close()
        ok = sum(r.status == "success" for r in run.files)
        result: dict[str, Any] = {"wall_s": m["wall_s"], "files": len(run.files), "success": ok}
        result["background_cores"] = m["background_cores"]
        if recorder is not None:
            assert isinstance(recorder.verifier, TimedVerifier)
            assert isinstance(recorder.ledger, TimedLedger)
            statuses = {r.ledger.status for r in run.files if r.ledger is not None}
            result |= {
                "readback_s": recorder.verifier.times,
                "readback_queries": recorder.verifier.queries,
                "record_s": recorder.ledger.times,
                "statuses": sorted(statuses),
            }
            recorder.close()
        return result


def big_file(servers: Servers, scratch: Path, rows: int) -> dict[str, Any]:
    source = export_of_rows(rows)
    root = scratch / "big"
    shutil.rmtree(root, ignore_errors=True)
    folder = root / "pvbench-big" / "campaign" / "02001171"
    folder.mkdir(parents=True)
    shutil.copy(source, folder / "big.tsv")
    with servers.fresh() as server:
        client = make_client(server.url, server.token, server.org, 300)
        target = InfluxTarget(client, server.org, gzip_level=0)
        verifier = TimedVerifier(client)
        recorder = Recorder(TimedLedger(scratch / "big-state" / "ledger.sqlite3"), verifier)
        started = time.perf_counter()
        run = ingest_paths(
            [folder / "big.tsv"], target, IngestOptions(data_root=root, ledger=recorder)
        )
        wall = time.perf_counter() - started
        target.close()
        (report,) = run.files
        assert report.ledger is not None, report.error
        recorder.close()
    return {
        "rows": rows,
        "points": report.ledger.points_expected,
        "status": report.ledger.status,
        "ingest_wall_s": wall,
        "readback_s": verifier.times[0],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shape = TreeShape(companies=1, campaigns=1, devices=10, days=args.days)
    pristine = generate_tree(shape)
    files = tree_files(pristine)
    scratch = Path(tempfile.mkdtemp(prefix="pvbench-ledger-", dir=work_dir()))
    results: dict[str, Any] = {"machine": machine(), "files": len(files), "values": shape.values}
    try:
        wait_for_quiet(args.quiet_wait)
        base = min(client_pass(files, False)[0] for _ in range(args.repeat))
        extra = min(client_pass(files, True)[0] for _ in range(args.repeat))
        plain = min(plain_pass(files) for _ in range(args.repeat))
        hashed = min(fingerprint_pass(files) for _ in range(args.repeat))
        results["client"] = {
            "stats_cpu_s": base,
            "stats_distinct_sha_cpu_s": extra,
            "parse_encode_cpu_s": plain,
            "parse_encode_through_fingerprint_cpu_s": hashed,
        }
        servers = Servers(argparse.Namespace(url=None), scratch, shape)
        runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
        for _ in range(args.repeat):
            for key in ("without", "with"):
                wait_for_quiet(args.quiet_wait)
                print(f"server run {key} ledger ...", file=sys.stderr)
                runs[key].append(server_run(servers, pristine, scratch, key == "with"))
        results["runs"] = runs
        if args.big_rows:
            wait_for_quiet(args.quiet_wait)
            print(f"big file, {args.big_rows} rows ...", file=sys.stderr)
            results["big"] = big_file(servers, scratch, args.big_rows)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _pass_row(label: str, cpu_s: float, values: int) -> list[str]:
    return [label, f"{cpu_s:.2f}", mvals(values / cpu_s)]


def _ms(times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[18] if len(times) > 1 else times[0]
    return f"{statistics.mean(times) * 1e3:.1f} / {p95 * 1e3:.1f}"


def render(results: dict[str, Any]) -> str:
    m, c = results["machine"], results["client"]
    values = results["values"]
    passes = [
        _pass_row("parse + encode + stats", c["stats_cpu_s"], values),
        _pass_row("+ DistinctPoints + SHA-256", c["stats_distinct_sha_cpu_s"], values),
        _pass_row("parse + encode", c["parse_encode_cpu_s"], values),
        _pass_row(
            "parse + encode through Fingerprint",
            c["parse_encode_through_fingerprint_cpu_s"],
            values,
        ),
    ]
    lines = [
        f"PowerView ledger benchmark, {m['date']}, {m['cpus']} CPUs, Python {m['python']}",
        f"{results['files']} files of 145 rows x 30 channels, {values:,} values",
        "",
        "client side, one thread, least CPU:",
        table(["pass", "CPU s", "values/CPU-s"], passes),
        "",
        "into a fresh InfluxDB each run (best wall):",
    ]
    rows = []
    for key, runs in results["runs"].items():
        best = min(runs, key=lambda r: r["wall_s"])
        row = [f"{key} ledger", f"{best['wall_s']:.2f}", f"{best['background_cores']:.2f}"]
        row.append(", ".join(f"{r['wall_s']:.2f}" for r in runs))
        if key == "with":
            reads = [t for r in runs for t in r["readback_s"]]
            records = [t for r in runs for t in r["record_s"]]
            queries = f"{best['readback_queries']:,}"
            row += [_ms(reads), queries, _ms(records), ",".join(best["statuses"])]
        else:
            row += ["", "", "", ""]
        rows.append(row)
    headers = [
        "run", "wall s", "others", "every run", "read-back ms", "queries", "SQLite ms", "statuses"
    ]  # fmt: skip
    lines += [
        table(headers, rows),
        "(ms: mean / 95th percentile per file; a read-back query counts several files,"
        " each gets its share)",
    ]
    if "big" in results:
        b = results["big"]
        lines += [
            "",
            f"one file of {b['rows']:,} rows ({b['points']:,} points): ingest "
            f"{b['ingest_wall_s']:.1f} s, read-back {b['readback_s'] * 1e3:.0f} ms, {b['status']}",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--big-rows", type=int, default=50_000)
    parser.add_argument("--quiet-wait", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = measure(args)
    if args.json:
        print_json(results)
    else:
        print(render(results))


if __name__ == "__main__":
    main()
