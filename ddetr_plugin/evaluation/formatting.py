"""Turning evaluation results into log tables and flat metric records."""
import logging
import math
from typing import Dict, List, Mapping, Sequence

logger = logging.getLogger(__name__)


def flatten_results(results: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """``{"bbox": {"AP": 50.0, ...}}`` -> ``{"bbox/AP": 50.0, ...}``, the keys of metrics.json."""
    return {f"{task}/{name}": value for task, metrics in results.items() for name, value in metrics.items()}


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with a header row; floats are printed with 3 decimals."""

    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    text_rows: List[List[str]] = [list(header)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in text_rows) for i in range(len(header))]

    def line(row: List[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(text_rows[0]), separator] + [line(r) for r in text_rows[1:]])


def format_per_class_table(per_class_ap: Mapping[str, float], columns: int = 3) -> str:
    """Per-class AP laid out as ``columns`` (category, AP) pairs per row, so 80 classes stay short."""
    items = list(per_class_ap.items())
    rows = []
    for start in range(0, len(items), columns):
        chunk = items[start:start + columns]
        row: List[object] = [v for item in chunk for v in item]
        row += [""] * (2 * columns - len(row))
        rows.append(row)
    return format_table(["category", "AP"] * columns, rows)


def print_csv_format(results: Mapping[str, Mapping[str, float]]) -> None:
    """Log each task's summary metrics as two comma-separated lines, easy to paste into a sheet.

    Per-class entries ("AP-<name>") are left out.
    """
    for task, metrics in results.items():
        summary = {k: v for k, v in metrics.items() if "-" not in k}
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(summary))
        logger.info("copypaste: %s", ",".join("nan" if math.isnan(v) else f"{v:.4f}" for v in summary.values()))
