"""Benchmark tables: ratios against a baseline row of the same run, markdown, JSON, and the networks plot."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


class MissingBaselineError(ValueError):
    """A ratio was asked for against a baseline that this run did not measure."""


def add_ratios(rows: list[dict], baseline: dict, keys: list[str], group_keys: list[str]) -> None:
    """For each row, key_ratio = row[key] / the baseline row's key. The baseline row of a row matches every
    item of ``baseline`` (e.g. {"network": "PlainConvUNet"}) and has the row's values of ``group_keys``."""
    for row in rows:
        base = next((r for r in rows if all(r.get(k) == v for k, v in baseline.items())
                     and all(r[g] == row[g] for g in group_keys)), None)
        if base is None:
            wanted = ", ".join(f"{k}={v}" for k, v in {**baseline, **{g: row[g] for g in group_keys}}.items())
            raise MissingBaselineError(f"no row with {wanted} in this run: every figure is a ratio against it, "
                                       f"so measure it in the same run")
        for key in keys:
            if row.get(key) is not None and base.get(key):
                row[f"{key}_ratio"] = row[key] / base[key]


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_report(out: Path, name: str, device: str, rows: list[dict], columns: list[str], **meta) -> str:
    """Writes out/name.json and out/name.md (the table under a line naming the device and the command);
    returns the markdown."""
    import torch
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(device=device, torch=torch.__version__, command=" ".join(sys.argv),
                date=time.strftime("%Y-%m-%d %H:%M"), **meta)
    (out / f"{name}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    table = f"Device: {device}; torch {meta['torch']}; `{meta['command']}`\n\n" + markdown_table(rows, columns)
    (out / f"{name}.md").write_text(table + "\n")
    return table


def plot_networks(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # Off CUDA there is no allocator peak: plot the activations kept for backward instead.
    memory = "train_peak_GiB" if all(row.get("train_peak_GiB") is not None for row in rows) else "saved_for_bwd_GiB"
    fig, ax = plt.subplots(figsize=(7, 5))
    for row in rows:
        ax.scatter(row["train_step_ms"], row[memory], s=row["gmacs"] * 3, alpha=0.5)
        ax.annotate(f"{row['network']} {row.get('compile', '')}\n{row['patch']} b{row['batch']}",
                    (row["train_step_ms"], row[memory]), fontsize=7)
    ax.set_xlabel("training step (ms)")
    ax.set_ylabel("training peak memory (GiB)" if memory == "train_peak_GiB" else "activations kept for backward (GiB)")
    ax.set_title("bubble area ~ forward GMACs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
