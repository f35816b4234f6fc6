"""`logging.getLogger`, with `logging` imported at the first message: most runs never log, and
importing it costs milliseconds of every `rkt` start and every pod's setup."""

from __future__ import annotations


class Logger:
    """Stands for logging.getLogger(name); the real logger is looked up on first use."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr: str):
        import logging  # the CLI configures it as it loads (rktnetes.cli.main)

        return getattr(logging.getLogger(self.name), attr)


def getLogger(name: str) -> Logger:  # noqa: N802 - as logging's
    return Logger(name)
