"""The project's own error types.

Every problem with a user's input (a file, a config key, a command-line value) is raised as a
subclass of `ProjectError` with a one-line message naming the file or key and what is wrong. The
command lines print that line and exit with code 2 (see `common.cli.run_cli`).
"""


class ProjectError(Exception):
    """Base class of every error the project reports to a user."""


class DataError(ProjectError):
    """A data file or folder is missing, unreadable or malformed. The message names the file."""


class ConfigError(ProjectError):
    """A config file, key or value is invalid. The message names the key."""


class ExportError(ProjectError):
    """A model cannot be exported as asked (for example it is over the size budget)."""


class RunDirError(ProjectError):
    """A run directory is missing, incomplete, or would be overwritten."""


class TrainingError(ProjectError):
    """Training cannot go on (its loss became NaN or infinite). The message names the run."""


def did_you_mean(word, choices, prefix=""):
    """The hint ` (did you mean 'PREFIX+choice'?)` for the one of `choices` (strings) closest to
    `word` (difflib, similarity >= 0.6), or "" when none is close: `train.epoch` -> train.epochs."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""
