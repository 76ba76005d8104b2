"""results.json's ``status``: a run is "running" until it ends as one of the others."""

FINISHED = ("completed", "stopped_early")  # trained to the end of its budget, or stopped early
UNFINISHED = ("interrupted", "running")  # continues from its last.pt (or died before one)
FAILED = "failed"
