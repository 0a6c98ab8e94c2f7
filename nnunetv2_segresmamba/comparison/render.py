"""Rendering a collected comparison: the table (markdown, CSV), the JSON and the figure."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any

from .collect import EPOCH_TIME_NOTE, EXPECTED_FOLDS, MISSING, fold_list, folds_phrase

def class_names(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(name for row in rows for name in row["dice_per_class"]))


def table_rows(comparison: dict) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the table, raw values (None where missing); CSV and markdown format them."""
    rows, names = comparison["rows"], class_names(comparison["rows"])
    header = ["trainer", "folds present", *[f"Dice {n}" for n in names], "mean Dice", "params (M)", "GMACs",
              "peak memory (GiB)", "peak reserved (GiB)", "epoch time (s)", "inference (s/case)", "energy (kWh)",
              "CO2 (kg)", "missing"]
    body = []
    for row in rows:
        scale = lambda v, s: None if v is None else v / s  # noqa: E731
        body.append([row["trainer"], " ".join(map(str, row["folds_present"])),
                     *[row["dice_per_class"].get(n) for n in names], row["mean_dice"],
                     scale(row["params"], 1e6), scale(row["macs"], 1e9), row["peak_gpu_memory_GiB"],
                     row.get("peak_gpu_reserved_GiB"),
                     row["epoch_time_s"], row["inference_s_per_case"], row["energy_kWh"], row["co2_kg"],
                     "; ".join(row["missing"])])
    return header, body


def _cell(value: Any, column: str) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, str):
        return value
    digits = {"params (M)": ".2f", "GMACs": ".1f", "peak memory (GiB)": ".2f", "peak reserved (GiB)": ".2f",
              "epoch time (s)": ".1f", "inference (s/case)": ".3f", "energy (kWh)": ".4g", "CO2 (kg)": ".4g"}
    return format(value, digits.get(column, ".4f"))


def markdown(comparison: dict) -> str:
    header, body = table_rows(comparison)
    lines = [f"## {comparison['dataset']}, {comparison['plans']} {comparison['configuration']}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for values in body:
        cells = [_cell(v, column) for v, column in zip(values, header)]
        cells[1] = cells[1].replace(" ", ", ") if values[1] else "none"
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Dice: nnU-Net's validation summary.json of each present fold, averaged over those folds "
                  f"(expected folds: {fold_list(list(EXPECTED_FOLDS))}). Epoch time: {EPOCH_TIME_NOTE}. "
                  "Params and MACs: the trainer's network at batch 1 and the plan's patch size. Inference: "
                  "inference_time.json's seconds over its cases, summed over the folds that have one. Energy and CO2: "
                  "GPU energy summed over the folds that recorded it. Peak memory: the largest over folds and over "
                  "the whole training (compiling included), allocated by PyTorch (weights, gradients, activations) "
                  "and reserved by its allocator (its cache and CUDA graphs' memory pools included).", ""]
    for row in comparison["rows"]:
        partial = []
        if row.get("folds_sharing_gpu"):
            partial.append(f"epoch time and energy leave out {folds_phrase(row['folds_sharing_gpu'])}, "
                           f"trained beside other processes on the same GPU")
        if row["energy_folds"] and row["energy_folds"] != row["folds_present"]:
            partial.append(f"energy over {folds_phrase(row['energy_folds'])} only")
        if row["inference_folds"] and row["inference_folds"] != row["folds_present"]:
            partial.append(f"inference time over {folds_phrase(row['inference_folds'])} only")
        where = f"trained on {', '.join(row['gpus'])}" if row["gpus"] else "training GPU unknown"
        if row["inference_devices"]:
            where += f"; inference timed on {', '.join(row['inference_devices'])}"
            if row["inference_tta"]:
                where += f" ({' and '.join('with TTA' if t else 'without TTA' for t in row['inference_tta'])})"
        if row["network_error"]:
            partial.append(f"no network figures: {row['network_error'].splitlines()[0]}")
        lines.append(f"- {row['trainer']}: {where}" + "".join(f"; {p}" for p in partial) + ".")
    best = comparison["best_configuration"]
    if best:
        lines += ["", f"nnU-Net's find_best_configuration selected {' + '.join(best['selected'])}: "
                      f"Dice {_cell(best['dice_before_postprocessing'], '')} before, "
                      f"{_cell(best['dice_after_postprocessing'], '')} after postprocessing."]
    for ensemble in comparison["ensembles"]:
        lines.append(f"- ensemble {ensemble['name']}: mean Dice {_cell(ensemble['mean_dice'], '')}")
    return "\n".join(lines) + "\n"


def write_csv(comparison: dict, path: Path) -> None:
    header, body = table_rows(comparison)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in values] for values in body])


# What mean Dice is plotted against, one panel each: the paper's Figure 2 (training memory) first. A panel is
# drawn when at least one trainer has that figure, so a results tree without peak memory (energy.json
# written before it recorded memory) still gets a figure instead of an empty one.
FIGURE_PANELS = (("peak_gpu_memory_GiB", "training memory (GiB, peak allocated)"),
                 ("peak_gpu_reserved_GiB", "training memory (GiB, peak reserved, CUDA graphs' pools included)"),
                 ("energy_kWh", "training GPU energy (kWh, present folds summed)"),
                 ("epoch_time_s", "epoch time (s, mean, warm-up left out)"))


def figure_points(rows: list[dict], key: str = "peak_gpu_memory_GiB") -> tuple[list[dict], list[str]]:
    """(rows that have both ``key`` and mean Dice, names of the others): nothing is plotted at 0."""
    shown = [r for r in rows if r.get(key) is not None and r["mean_dice"] is not None]
    return shown, [r["trainer"] for r in rows if r not in shown]


def figure_panels(rows: list[dict]) -> list[tuple[str, str]]:
    """The (key, axis label) of each panel to draw: those of FIGURE_PANELS that some trainer can be plotted
    on; the memory panel alone (saying that nothing could be plotted) when there is none."""
    panels = [(key, label) for key, label in FIGURE_PANELS if figure_points(rows, key)[0]]
    return panels or [FIGURE_PANELS[0]]


def plot_dice_against_cost(comparison: dict, path: Path) -> None:
    """Mean Dice against training memory (the paper's Figure 2), GPU energy and epoch time, one panel each
    (see figure_panels) and one labelled point per trainer. Trainers without that figure (or Dice) are named
    under the panel's title instead of drawn at 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = comparison["rows"]
    panels = figure_panels(rows)
    figure = Figure(figsize=(5.2 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    colours = {row["trainer"]: f"C{i}" for i, row in enumerate(rows)}
    for index, (key, label) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        shown, hidden = figure_points(rows, key)
        for row in shown:
            axes.scatter(row[key], row["mean_dice"], s=40, color=colours[row["trainer"]])
            axes.annotate(row["trainer"], (row[key], row["mean_dice"]), textcoords="offset points",
                          xytext=(0, 7), ha="center", fontsize=7)
        axes.set_xlabel(label)
        axes.set_ylabel("mean Dice (validation folds)")
        title = f"mean Dice against {label.split(' (')[0]}"
        if hidden:
            title += "\nnot plotted (not recorded):\n" + textwrap.fill(", ".join(hidden), 60)
        if not shown:
            axes.text(0.5, 0.5, "no trainer has both", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(title, fontsize=8)
        axes.margins(0.3)
        axes.grid(alpha=0.3)
    title = f"{comparison['dataset']}, {comparison['plans']} {comparison['configuration']}"
    left_out = [label.split(" (")[0] for key, label in FIGURE_PANELS if (key, label) not in panels]
    if left_out and figure_points(rows, panels[0][0])[0]:  # (with nothing to plot, the one panel says so)
        title += f" (no trainer recorded {' or '.join(left_out)}: not plotted)"
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=150)


def write_outputs(comparison: dict, out: Path) -> dict[str, Path]:
    """comparison.md, .csv, .json and .png in ``out``; the PNG is skipped (with a note) without matplotlib."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"comparison.{ext}" for ext in ("md", "csv", "json", "png")}
    paths["md"].write_text(markdown(comparison))
    write_csv(comparison, paths["csv"])
    paths["json"].write_text(json.dumps(comparison, indent=1, allow_nan=False))
    try:
        plot_dice_against_cost(comparison, paths["png"])
    except ImportError:
        print("matplotlib is not installed (pip install 'nnunetv2-segresmamba[plots]'): no comparison.png")
        del paths["png"]
    return paths
