#!/usr/bin/env python3
"""Per-epoch summary of a run's monitor rows (MSN's np/max_t, SIM's rank_t/rank_c/shared, ...).

usage: python3 Tools/monitor_summary.py RUN/metrics.jsonl [FIELD ...]

Prints, for each epoch (1-based) that logged the fields, min-max and mean over its steps. With no
FIELD, every numeric field of the monitor rows except epoch, step and loss. A step logged twice (a
run interrupted mid-epoch and resumed from the epoch's start) counts once, with its last row.
"""
import collections
import json
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python3 Tools/monitor_summary.py RUN/metrics.jsonl [FIELD ...]")
    wanted = sys.argv[2:]
    by_step = {}
    with open(sys.argv[1]) as f:
        for line in f:
            row = json.loads(line)
            if row.get("kind") == "monitor":
                by_step[row["step"]] = row
    epochs = collections.defaultdict(list)
    for row in by_step.values():
        epochs[row["epoch"]].append(row)
    for epoch, rows in sorted(epochs.items()):
        fields = wanted or [k for k, v in rows[0].items()
                            if isinstance(v, (int, float)) and k not in ("epoch", "step", "loss")]
        parts = []
        for k in fields:
            values = [r[k] for r in rows if k in r]
            if values:
                parts.append(f"{k} {min(values):.3f}-{max(values):.3f} (mean {sum(values) / len(values):.3f})")
        if parts:
            print(f"epoch {epoch + 1}, {len(rows)} steps: " + ", ".join(parts))


if __name__ == "__main__":
    main()
