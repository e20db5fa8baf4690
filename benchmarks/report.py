"""Regenerate BENCHMARKS.md's tables from the raw JSON lines in benchmarks/results/.

    python benchmarks/report.py           # rewrite the generated blocks of BENCHMARKS.md
    python benchmarks/report.py --check   # exit 1 if BENCHMARKS.md differs from what the JSON gives

`benchmarks/results/current.json` names, per block, the JSON-lines file (as `bench.py --json` writes it), an
optional `run` label selecting one set of rows of it (the rows' "code" field), and the provenance the older
files do not carry themselves (machine, commit, date, command). Each block of BENCHMARKS.md between
`<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` is replaced by that file's table (`bench.table`: our
steps/s, torch eager's at the same precision and its best, the ratios, the paired ratios of alternating repeats).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import table  # noqa: E402
from flops import step_flops  # noqa: E402

DOC = os.path.join(HERE, "..", "BENCHMARKS.md")
MANIFEST = os.path.join(HERE, "results", "current.json")
_BLOCK = re.compile(r"(<!-- bench:(?P<name>[\w-]+):begin -->\n)(?P<body>.*?)(<!-- bench:(?P=name):end -->)", re.S)


def read_rows(path: str, run: str | None = None) -> list[dict]:
    """The measurement rows of a bench.py JSON-lines file, those labelled `run` when given."""
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if "impl" in r and (run is None or r.get("code") == run)]
    if not rows:
        raise ValueError(f"{path}: no rows" + (f" labelled {run!r}" if run else ""))
    return rows


def block(entry: dict, results_dir: str) -> str:
    """One generated block: the provenance line, then the table of each run it names."""
    runs = entry.get("runs", [None])
    lines = [f"Measured on {entry['machine']} at commit {entry['commit']}, {entry['date']}: `{entry['command']}` "
             f"(raw: `benchmarks/results/{entry['file']}`" + (f", rows {', '.join(map(repr, runs))}" if runs != [None]
                                                                   else "") + ").", ""]
    for run in runs:
        if run is not None:
            lines += [f"{run}:", ""]
        lines += [table(read_rows(os.path.join(results_dir, entry["file"]), run)), ""]
    return "\n".join(lines)


def flops_block() -> str:
    """The analytic FLOPs per step of the default configurations (benchmarks/flops.py)."""
    configs = (("dcgan32", "ns", 64), ("dcgan32", "wgan", 64), ("dcgan32", "wgan-gp", 64), ("dcgan64", "ns", 128))
    lines = ["| config | FLOPs per step |", "|---|---|"]
    lines += [f"| {a} {loss} b{b} | {step_flops(a, loss, b):,} |" for a, loss, b in configs]
    return "\n".join(lines) + "\n"


def render(doc: str, manifest: dict, results_dir: str) -> str:
    """`doc` with every generated block replaced; a block the manifest lacks is an error."""
    def fill(m: re.Match) -> str:
        name = m["name"]
        if name == "flops":
            body = flops_block()
        elif name in manifest:
            body = block(manifest[name], results_dir)
        else:
            raise ValueError(f"BENCHMARKS.md block {name!r} is not in {MANIFEST}; known: {sorted(manifest)} and 'flops'")
        return m.group(1) + body + m.group(4)
    return _BLOCK.sub(fill, doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when BENCHMARKS.md is stale")
    a = p.parse_args(argv)
    with open(MANIFEST) as f:
        manifest = json.load(f)
    with open(DOC) as f:
        doc = f.read()
    new = render(doc, manifest, os.path.dirname(MANIFEST))
    if a.check:
        if new != doc:
            print("BENCHMARKS.md differs from benchmarks/results: run python benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    with open(DOC, "w") as f:
        f.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
