"""PowerView's own CPU per line of the end-to-end ingest, split by thread.

    .venv/bin/python bench/bench_client.py [--companies 1] [--repeat 3] [--json]

The end-to-end ratio of bench_ingest.py is a wall-clock figure: on a machine
shared with other jobs it says more about the neighbours than about
PowerView. The CPU time PowerView spends per line is much less sensitive to
load, and it is what the server loses when both share the cores. This script
runs `ingest_paths` over the bench tree (`--companies` of its 5 companies,
200 files and 870,000 lines each), as `powerview ingest` does:

- with a NullWriter: parse, encode, stats and the file moves, no HTTP;
- into a throwaway influxd with an `InfluxTarget`, gzip level 0 and 1, on one
  connection: the same plus the body encoding, compression and HTTP client.

For each it prints the least CPU of `--repeat` runs in microseconds per line:
the whole process, the main thread (parsing and queueing) and the writer
threads (from /proc/self/task), and influxd's CPU per line for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_ingest import ORG, Server, TreeShape, create_buckets, generate_tree
from bench.common import machine, print_json, process_cpu_s, table, wait_for_quiet, work_dir
from powerview import layout
from powerview.formats import ParseOptions
from powerview.influx import InfluxTarget, LineWriter, NullWriter, make_client
from powerview.ingest import IngestOptions, ingest_paths
from powerview.stack import find_influxd, throwaway_server

_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(native_id: int | None) -> float:
    """User + system CPU seconds of one thread of this process."""
    if native_id is None:
        return 0.0
    try:
        stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def run_once(
    pristine: Path, scratch: Path, companies: list[str], make_writer: Callable[[], LineWriter]
) -> dict[str, float]:
    """One ingest of a fresh copy of the companies' files; CPU seconds by thread."""
    root = scratch / "tree"
    shutil.rmtree(root, ignore_errors=True)
    for company in companies:
        shutil.copytree(pristine / company, root / company)
    writer = make_writer()
    options = IngestOptions(data_root=root, parse=ParseOptions())
    main = time.thread_time()
    cpu, wall = time.process_time(), time.perf_counter()
    run = ingest_paths(layout.find_files([root]), writer, options)
    result = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "main_s": time.thread_time() - main,
        "writers_s": sum(
            thread_cpu_s(t.native_id)
            for t in threading.enumerate()
            if t.name.startswith("influx-writer")
        ),
        "lines": float(sum(r.nb_points for r in run.files)),
    }
    if isinstance(writer, InfluxTarget):
        writer.close()
    if any(r.status != "success" for r in run.files):
        raise RuntimeError(f"ingest failed: { ({r.error for r in run.files if r.error}) }")
    return result


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shape = TreeShape()
    pristine = generate_tree(shape)
    companies = shape.buckets()[: args.companies]
    scratch = Path(tempfile.mkdtemp(prefix="pvclient-", dir=work_dir()))
    results: dict[str, Any] = {"machine": machine(), "companies": companies, "runs": {}}
    try:
        binary = find_influxd()
        if binary is None:
            raise SystemExit("no influxd found: run `powerview stack install`")
        with throwaway_server(binary, scratch / "influxd", org=ORG) as (influxd, setup):
            server_pid = influxd.running_pid()

            def target(level: int) -> Callable[[], LineWriter]:
                def make() -> LineWriter:
                    with make_client(setup.url, setup.token, setup.org, 60) as client:
                        api = client.buckets_api()
                        for name in companies:
                            found = api.find_bucket_by_name(name)
                            if found is not None:
                                api.delete_bucket(found)
                    create_buckets(Server(setup.url, setup.token, setup.org, None), companies)
                    client = make_client(setup.url, setup.token, setup.org, 60)
                    return InfluxTarget(client, setup.org, gzip_level=level)

                return make

            kinds: dict[str, Callable[[], LineWriter]] = {
                "null": NullWriter,
                "influx_gzip0": target(0),
                "influx_gzip1": target(1),
            }
            for key, make in kinds.items():
                runs = []
                for _ in range(args.repeat):
                    if args.quiet_wait > 0:
                        wait_for_quiet(args.quiet_wait)
                    server_before = process_cpu_s(server_pid)
                    run = run_once(pristine, scratch, companies, make)
                    run["influxd_s"] = process_cpu_s(server_pid) - server_before
                    runs.append(run)
                    print(f"  {key}: {run['cpu_s']:.2f} CPU s", file=sys.stderr, flush=True)
                results["runs"][key] = min(runs, key=lambda r: r["cpu_s"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    rows = []
    for key, run in results["runs"].items():
        per = 1e6 / run["lines"]
        rows.append(
            [
                key,
                f"{run['lines']:,.0f}",
                f"{run['cpu_s'] * per:.3f}",
                f"{run['main_s'] * per:.3f}",
                f"{run['writers_s'] * per:.3f}",
                f"{run['influxd_s'] * per:.3f}" if key != "null" else "",
                f"{run['wall_s']:.2f}",
            ]
        )
    headers = ["run", "lines", "process µs/line", "main", "writers", "influxd µs/line", "wall s"]
    return "\n".join(
        [
            f"PowerView client CPU, {m['date']}, {m['cpus']} CPUs ({m['cpu_model']}), "
            f"Python {m['python']}; companies {', '.join(results['companies'])}; "
            "least CPU of the runs:",
            table(headers, rows),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--companies", type=int, default=1, help="companies of the tree (1-5)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind")
    parser.add_argument(
        "--quiet-wait", type=float, default=10, help="wait up to S s for an idle machine per run"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results = measure(args)
    if args.json:
        print_json(results)
    else:
        print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
