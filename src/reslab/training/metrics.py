"""Classification metrics with torchmetrics, named ``split/name`` as everywhere in reslab.

Everything accumulates on the device; values are read once, when the split is done.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

# The trainer feeds its own logits and integer labels: torchmetrics' argument checks would only
# cost a host synchronisation per batch on CUDA (they inspect the label values).
NO_ARG_CHECKS = {"validate_args": False}


def summary_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, top-5 (when there are more than 5 classes), precision/recall/F1 macro and weighted."""
    metrics = {"acc": MulticlassAccuracy(num_classes, average="micro", **NO_ARG_CHECKS)}
    if num_classes > 5:
        metrics["top5_acc"] = MulticlassAccuracy(
            num_classes, top_k=5, average="micro", **NO_ARG_CHECKS
        )
    for average in ("macro", "weighted"):
        metrics[f"precision_{average}"] = MulticlassPrecision(
            num_classes, average=average, **NO_ARG_CHECKS
        )
        metrics[f"recall_{average}"] = MulticlassRecall(
            num_classes, average=average, **NO_ARG_CHECKS
        )
        metrics[f"f1_{average}"] = MulticlassF1Score(num_classes, average=average, **NO_ARG_CHECKS)
    return MetricCollection(metrics)


def per_class_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "precision": MulticlassPrecision(num_classes, average=None, **NO_ARG_CHECKS),
            "recall": MulticlassRecall(num_classes, average=None, **NO_ARG_CHECKS),
            "f1": MulticlassF1Score(num_classes, average=None, **NO_ARG_CHECKS),
            "confusion": MulticlassConfusionMatrix(num_classes, **NO_ARG_CHECKS),
        }
    )


def class_report(values: dict[str, torch.Tensor], classes: list[str]) -> list[dict]:
    """Precision, recall, F1 and support for each class, support read off the confusion matrix."""
    support = values["confusion"].sum(dim=1)
    return [
        {
            "class": name,
            "precision": float(values["precision"][i]),
            "recall": float(values["recall"][i]),
            "f1": float(values["f1"][i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    ]


def format_class_report(report: list[dict]) -> str:
    width = max(len("class"), *(len(r["class"]) for r in report))
    lines = [f"{'class':<{width}}  precision  recall     f1  support"]
    for r in report:
        lines.append(
            f"{r['class']:<{width}}  {r['precision']:9.4f}  {r['recall']:6.4f}  {r['f1']:.4f}  {r['support']:7d}"
        )
    return "\n".join(lines)
