"""Cases per second: toolduel's checker against BFCL's official one, on the same cases.

    python benchmarks/checker_speed.py [--outputs-per-entry 60] [--repeats 3]

The cases are those tests/test_checker_official.py compares: every entry of BFCL's python AST
categories with seeded mutated outputs (right answers and near misses), and the no-call
categories. Both checkers include the runner's first steps (relevance rule, format check). A
third line times ``check_sample`` on the same cases as toolduel types (what the reward calls;
it converts tools, gold and calls to BFCL's form first), for the entries ``load_bfcl`` reads.
The best of ``--repeats`` interleaved runs is reported, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import platform
import time

from toolduel.checker import check, check_sample, is_call_list
from toolduel.data.bfcl import load_bfcl
from toolduel.schema import Call
from toolduel.testing.bfcl_mutations import mutated_outputs
from toolduel.testing.bfcl_reference import (
    Entry,
    load_entries,
    load_official_ast_checker,
    official_verdict,
)


def build_cases(outputs_per_entry: int, seed: int = 0) -> list[tuple[Entry, object]]:
    """(entry, decoded output) for every entry and each of its outputs."""
    cases = []
    for entry in load_entries():
        count = outputs_per_entry if entry.ground_truth else max(1, outputs_per_entry // 5)
        cases += [(entry, output) for output in mutated_outputs(entry, count, seed)]
    return cases


def as_sample_cases(cases: list[tuple[Entry, object]]) -> list[tuple]:
    """(Sample, calls): outputs in call format become ``list[Call]``, others stay as they are."""
    samples = {sample.id: sample for sample in load_bfcl("all")}  # all but live_relevance
    return [(samples[entry.id], [Call(*next(iter(c.items()))) for c in output] if is_call_list(output) else output)
            for entry, output in cases if entry.id in samples]


def time_ours(cases: list[tuple[Entry, object]]) -> float:
    start = time.perf_counter()
    for entry, output in cases:
        check(entry.functions, output, entry.ground_truth, entry.category)
    return time.perf_counter() - start


def time_official(cases: list[tuple[Entry, object]], ast_checker) -> float:
    start = time.perf_counter()
    for entry, output in cases:
        try:
            official_verdict(ast_checker, entry.functions, output, entry.ground_truth, entry.category)
        except Exception:  # BFCL raises on a few outputs (huge ints, ...); those count as judged
            pass
    return time.perf_counter() - start


def time_samples(sample_cases: list[tuple]) -> float:
    start = time.perf_counter()
    for sample, calls in sample_cases:
        check_sample(sample, calls)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs-per-entry", type=int, default=60, help="outputs per entry with gold calls")
    parser.add_argument("--repeats", type=int, default=3, help="runs per checker; the fastest counts")
    args = parser.parse_args()

    ast_checker = load_official_ast_checker()
    cases = build_cases(args.outputs_per_entry)
    sample_cases = as_sample_cases(cases)
    runs: dict[str, list[float]] = {"ours": [], "official": [], "samples": []}
    for _ in range(args.repeats):  # interleaved, so that load from others hits all alike
        runs["ours"].append(time_ours(cases))
        runs["official"].append(time_official(cases, ast_checker))
        runs["samples"].append(time_samples(sample_cases))
    ours, official, samples = (min(runs[name]) for name in ("ours", "official", "samples"))
    print(f"python {platform.python_version()} on {platform.machine()}, {len(cases)} cases, "
          f"best of {args.repeats}")
    print(f"toolduel.checker.check          {len(cases) / ours:>10,.0f} cases/s  ({ours:.2f} s)")
    print(f"BFCL ast_checker (+ runner)     {len(cases) / official:>10,.0f} cases/s  ({official:.2f} s)")
    print(f"ratio (ours / BFCL)             {official / ours:>10.2f}x")
    print(f"toolduel.checker.check_sample   {len(sample_cases) / samples:>10,.0f} cases/s  "
          f"({samples:.2f} s, {len(sample_cases)} cases)")


if __name__ == "__main__":
    main()
