#!/usr/bin/env python3
"""Markdown tables of the embedding benchmarks' JSON lines.

    bench/report.py [FILE ...]        (no FILE, or -: standard input)

Reads the lines that bench/peers.py, bench/http_embeddings.py and models/examples/bench.rs
print, skipping any line that is not a JSON object (logs, cargo's output), and prints:

- one row per implementation, in the order first seen: sentences per second at each batch size
  seen, p50 / p99 latency of the short sentence in milliseconds, and batch-32 throughput over
  sentence-transformers' batch-32 throughput ("vs PyTorch @32"). Lines that give a thread count
  (the peers') make a row per implementation and thread count; the first sentence-transformers
  row is the reference. "–" marks a missing figure.
- when kernel lines are present, one row per kernel: WGSL and burn microseconds per call and
  the speedup of WGSL over burn.

Standard library only.
"""

import argparse
import fileinput
import json
import sys

REFERENCE_IMPL = "sentence-transformers"
REFERENCE_BATCH = 32
MISSING = "–"


class Results:
    """Benchmark figures by implementation row and by kernel, in the order first seen."""

    def __init__(self):
        self.rows = {}
        self.kernels = {}
        self.reference = None

    def add(self, record):
        if "kernel" in record:
            self.kernels[record["kernel"]] = record
        elif "impl" in record:
            self.add_impl(record)

    def add_impl(self, record):
        label = record["impl"]
        if "threads" in record:
            label = f"{label} ({record['threads']} threads)"
        row = self.rows.setdefault(label, {"rates": {}, "latency": None})
        if record["impl"] == REFERENCE_IMPL and self.reference is None:
            self.reference = row
        if "sentences_per_s" in record:
            row["rates"][record["batch"]] = record["sentences_per_s"]
        if "latency_p50_ms" in record:
            row["latency"] = (record["latency_p50_ms"], record["latency_p99_ms"])

    def batches(self):
        return sorted({batch for row in self.rows.values() for batch in row["rates"]})

    def vs_reference(self, row):
        rate = row["rates"].get(REFERENCE_BATCH)
        reference = self.reference and self.reference["rates"].get(REFERENCE_BATCH)
        return f"{rate / reference:.2f}×" if rate and reference else MISSING


def json_objects(lines):
    """The lines that parse as JSON objects, parsed."""
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def table(header, rows):
    """A Markdown table; the first column left-aligned, the others right-aligned."""
    rule = [":---"] + ["---:"] * (len(header) - 1)
    return [f"| {' | '.join(cells)} |" for cells in [header, rule, *rows]]


def number(value, digits=1):
    return MISSING if value is None else f"{value:,.{digits}f}"


def impl_table(results):
    batches = results.batches()
    header = ["impl"] + [f"batch {batch}" for batch in batches]
    header += ["p50 / p99 ms", f"vs PyTorch @{REFERENCE_BATCH}"]
    rows = []
    for label, row in results.rows.items():
        rates = [number(row["rates"].get(batch)) for batch in batches]
        latency = row["latency"]
        latency = MISSING if latency is None else f"{latency[0]:.2f} / {latency[1]:.2f}"
        rows.append([label, *rates, latency, results.vs_reference(row)])
    return table(header, rows)


def kernel_table(results):
    header = ["kernel", "WGSL µs", "burn µs", "speedup"]
    rows = [
        [name, number(k.get("wgsl_us")), number(k.get("burn_us")),
         MISSING if k.get("speedup") is None else f"{k['speedup']:.2f}×"]
        for name, k in results.kernels.items()
    ]
    return table(header, rows)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="JSON lines to read (default, or -: standard input)")
    return parser.parse_args()


def main():
    args = parse_args()
    results = Results()
    with fileinput.input(files=args.files) as lines:
        for record in json_objects(lines):
            results.add(record)
    sections = []
    if results.rows:
        sections.append(["Sentences per second by batch size; latency of one short sentence.",
                         "", *impl_table(results)])
    if results.kernels:
        sections.append(["WGSL kernels against burn's composition, microseconds per call.",
                         "", *kernel_table(results)])
    if not sections:
        sys.exit("no benchmark lines found")
    print("\n\n".join("\n".join(section) for section in sections))


if __name__ == "__main__":
    main()
