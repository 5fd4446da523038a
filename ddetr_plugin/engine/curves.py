"""A PNG of the training curves (losses, learning rate, evaluation AP), drawn with matplotlib if installed.

matplotlib is optional (not a dependency of the package): without it the plot is
skipped with one info line. Only matplotlib's object API is used (no pyplot), so
a host program's backend and figures are left alone.
"""
import importlib.util
import logging
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..utils.file_io import atomic_write

logger = logging.getLogger(__name__)

CURVES_FILE_NAME = "training_curves.png"
TRAINING_KEYS_PLOTTED = ("total_loss", "lr")
EVAL_KEYS_PLOTTED = ("bbox/AP", "bbox/AP50")
Series = Dict[str, List[Tuple[int, float]]]


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


class CurveSeries:
    """The points the PNG draws, gathered from metrics.json records as they come.

    Attributes:
        training: "total_loss" / "lr" -> [(iteration, value)] from training records.
        evaluation: "bbox/AP" / "bbox/AP50" -> [(iteration, value)] from evaluation records.
    """

    def __init__(self) -> None:
        self.training: Series = {key: [] for key in TRAINING_KEYS_PLOTTED}
        self.evaluation: Series = {key: [] for key in EVAL_KEYS_PLOTTED}

    def add(self, records: Iterable[Mapping[str, Any]]) -> bool:
        """Append the plotted values of ``records``; True when one of them brought an evaluation point."""
        evaluated = False
        for record in records:
            iteration = record.get("iteration")
            if iteration is None:
                continue
            for series in (self.training, self.evaluation):
                for key, points in series.items():
                    if record.get(key) is not None:
                        points.append((iteration, record[key]))
                        evaluated = evaluated or series is self.evaluation
        return evaluated


def plot_training_curves(
    path: str, training: Series, evaluation: Series, loss_keys: Sequence[str] = ("total_loss",)
) -> Optional[str]:
    """Draw the curves to ``path`` (atomically) and return it; None when matplotlib is missing.

    Args:
        training: name -> [(iteration, value)], e.g. "total_loss", "lr".
        evaluation: name -> [(iteration, value)], e.g. "bbox/AP", "bbox/AP50".
        loss_keys: the training series drawn on the loss panel (log scale).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    figure = Figure(figsize=(12, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, lr_axes, ap_axes = figure.subplots(1, 3)
    for key in loss_keys:
        if training.get(key):
            iterations, values = zip(*training[key])
            loss_axes.plot(iterations, values, label=key, linewidth=1)
    if any(training.get(key) for key in loss_keys):
        loss_axes.set_yscale("log")
        loss_axes.legend(fontsize=8)
    loss_axes.set_title("training loss")
    if training.get("lr"):
        iterations, values = zip(*training["lr"])
        lr_axes.plot(iterations, values, linewidth=1)
    lr_axes.set_title("learning rate")
    for key, points in evaluation.items():
        if points:
            iterations, values = zip(*points)
            ap_axes.plot(iterations, values, marker="o", label=key, linewidth=1)
    if any(evaluation.values()):
        ap_axes.legend(fontsize=8)
    else:
        ap_axes.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ap_axes.transAxes)
    ap_axes.set_title("evaluation (%)")
    for axes in (loss_axes, lr_axes, ap_axes):
        axes.set_xlabel("iteration")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    atomic_write(path, lambda f: figure.savefig(f, format="png"))
    return path
