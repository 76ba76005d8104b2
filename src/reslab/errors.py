"""Errors a user can fix: the command line prints them as one line, without a traceback."""


class ReslabError(Exception):
    """Base for user-facing errors; the message says what is wrong and what to do."""


class ConfigError(ReslabError):
    """A config value that cannot work (bad depth, negative learning rate, ...)."""


class ResumeRefused(ConfigError):
    """A resume that would not continue the same run; the run folder is left as it was."""


class DataError(ReslabError):
    """A dataset that is missing, corrupt or cannot be fetched."""


class TrainingError(ReslabError):
    """Training cannot go on (NaN loss, out of memory, ...)."""


class TrainingInterrupted(Exception):
    """Raised after a signal asked training to stop and last.pt has been saved."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason} received; last.pt saved, resume with resume=<run folder>")
        self.reason = reason
