"""How long `promoter --help` takes against `python -c "import typer"`, the floor of any Typer CLI.

Runs each command N times (interleaved, so load on the machine hits both alike) and prints the median and the
ratio. Goal: `promoter --help` at most 1.3 x the bare typer import.

    python bench/bench_cli_start.py [--runs 30]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    promoter = shutil.which("promoter") or sys.exit("promoter is not on PATH (pip install .)")
    baseline_cmd = [sys.executable, "-c", "import typer"]
    cases = {"python -c 'import typer'": baseline_cmd, "promoter --help": [promoter, "--help"],
             "promoter deploy --help": [promoter, "deploy", "--help"]}
    for cmd in cases.values():  # warm the page cache and the bytecode
        _time(cmd)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, cmd in cases.items():
            times[name].append(_time(cmd))
    base = statistics.median(times["python -c 'import typer'"])
    print(f"{'command':<28} {'median ms':>10} {'p90 ms':>8} {'x typer':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(0.9 * (len(values) - 1))]
        print(f"{name:<28} {median * 1000:>10.1f} {p90 * 1000:>8.1f} {median / base:>8.2f}")
    ratio = statistics.median(times["promoter --help"]) / base
    print(f"promoter --help / import typer = {ratio:.2f} (goal <= 1.30): {'met' if ratio <= 1.3 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
