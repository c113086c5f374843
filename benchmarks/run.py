#!/usr/bin/env python3
"""Runs every benchmark side by side in one run: this library (mp_bench, Google Benchmark), the
same workload through Python's multiprocessing (python/bench_*.py), and the raw OS floor (also in
mp_bench). Prints a markdown table of medians and ratios; --readme writes it into
benchmarks/README.md between the markers.

C++ benchmarks are named ROW/VARIANT: VARIANT "mp" is this library, "floor:LABEL" the OS floor,
"other:LABEL" any other comparison. A benchmark whose iteration handles several items sets the
counter "items" (per iteration); the table shows time per item. Python modules define ROWS:
{row: {"title": str, "python": {label: function returning seconds per item}}}.
"""
import argparse
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def run_cpp(binary, repetitions, filt):
    cmd = [binary, "--benchmark_format=json", f"--benchmark_repetitions={repetitions}",
           "--benchmark_report_aggregates_only=true"]
    if filt:
        cmd.append(f"--benchmark_filter={filt}")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
    results = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        seconds = b["real_time"] * scale / float(b.get("items", 1) or 1)
        row, variant = (name.split("/") + [""])[:2]
        results.setdefault(row, {})[variant] = seconds
    return results


def run_python(filt):
    sys.path.insert(0, os.path.join(HERE, "python"))
    rows = {}
    for f in sorted(os.listdir(os.path.join(HERE, "python"))):
        if f.startswith("bench_") and f.endswith(".py"):
            rows.update(importlib.import_module(f[:-3]).ROWS)
    out = {}
    for row, spec in rows.items():
        if filt and not re.search(filt, row):
            continue
        out[row] = {"title": spec["title"], "python": {}}
        for label, fn in spec["python"].items():
            print(f"python: {row} / {label}", file=sys.stderr, flush=True)
            out[row]["python"][label] = fn()
    return out


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def table(cpp, py):
    lines = ["| benchmark | this library | Python | Python / ours | floor | ours / floor | others |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in sorted(set(cpp) | set(py)):
        variants = cpp.get(row, {})
        ours = variants.get("mp")
        title = py.get(row, {}).get("title", row)
        pys = py.get(row, {}).get("python", {})
        py_cells, py_ratio = [], []
        for label, t in pys.items():
            py_cells.append(f"{label}: {fmt_time(t)}")
            if ours:
                py_ratio.append(f"{t / ours:.1f}x")
        floors = {k[6:]: v for k, v in variants.items() if k.startswith("floor:")}
        others = {k[6:]: v for k, v in variants.items() if k.startswith("other:")}
        floor_cells = [f"{k}: {fmt_time(v)}" for k, v in floors.items()]
        floor_ratio = [f"{ours / v:.2f}x" for v in floors.values()] if ours else []
        other_cells = [f"{k}: {fmt_time(v)}" + (f" ({v / ours:.2f}x ours)" if ours else "")
                       for k, v in others.items()]
        lines.append(f"| {title} (`{row}`) | {fmt_time(ours)} | {'<br>'.join(py_cells) or '-'} | "
                     f"{'<br>'.join(py_ratio) or '-'} | {'<br>'.join(floor_cells) or '-'} | "
                     f"{'<br>'.join(floor_ratio) or '-'} | {'<br>'.join(other_cells) or '-'} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--repetitions", type=int, default=7)
    ap.add_argument("--filter", default="")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = ap.parse_args()

    cpp = run_cpp(args.binary, args.repetitions, args.filter)
    py = run_python(args.filter)
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}; medians of {args.repetitions} repetitions "
            f"(Python: 5), time per operation or per item.\n\n{table(cpp, py)}\n")
    print(text)
    if args.readme:
        path = os.path.join(HERE, "README.md")
        readme = open(path).read()
        start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
        open(path, "w").write(readme[:start] + "\n" + text + readme[end:])


if __name__ == "__main__":
    main()
