"""The one exception the training package raises for bad input."""


class TrainingError(Exception):
    """Bad input: missing or inconsistent data, config, or checkpoint; a diverged run.

    The message is one line meant for a person; the command line prints it and exits 1.
    """
