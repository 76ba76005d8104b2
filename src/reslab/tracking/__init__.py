"""Where a run's numbers go: CSV/JSON in the run folder, TensorBoard, W&B, all behind RunLogger."""

from reslab.tracking.base import LoggerGroup, RunLogger
from reslab.tracking.csv_logger import MetricsCSV
from reslab.tracking.results import write_json

__all__ = ["LoggerGroup", "MetricsCSV", "RunLogger", "write_json"]
