"""
Structured logs as JSON lines, for journald or a log shipper.

Two ways to get them:

  - C{twistd --logger clustersync.logs.jsonObserver clustersync ...}
    makes twistd's own log output (stdout under C{--nodaemon}, so the
    journal under systemd) one JSON object per line instead of text;
  - the C{log_json} setting (or C{--log-json PATH}, C{-} for stdout) adds a
    JSON lines file I{next to} twistd's usual log.

Each line is L{twisted.logger.eventAsJSON} of one event: the format string
(C{log_format}), every structured field (C{peer}, C{reason}, ...), the
level (C{log_level}), the namespace and the time.  Render one back to text
with L{twisted.logger.formatEvent} after L{twisted.logger.eventFromJSON}.
"""

from __future__ import annotations

import sys

from twisted.application.service import Service
from twisted.logger import globalLogPublisher, jsonFileLogObserver

__all__ = ["jsonObserver", "JSONLogService", "makeJSONLogService"]


def jsonObserver(outFile=None):
    """
    A log observer writing every event as one JSON line (no record
    separator) to C{outFile}, by default standard output.

    Usable as a twistd C{--logger} factory.
    """
    return jsonFileLogObserver(outFile if outFile is not None else sys.stdout,
                               recordSeparator="")


class JSONLogService(Service):
    """
    While running, writes every log event of the process as a JSON line
    to C{path} (appended), or to standard output if C{path} is C{-}.
    """

    name = "json-log"

    def __init__(self, path: str, publisher=None) -> None:
        self.path = path
        self.publisher = publisher if publisher is not None else globalLogPublisher
        self._file = None
        self._observer = None

    def startService(self) -> None:
        """Open the file and start observing."""
        Service.startService(self)
        if self.path == "-":
            out = sys.stdout
        else:
            out = self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._observer = jsonObserver(out)
        self.publisher.addObserver(self._observer)

    def stopService(self) -> None:
        """Stop observing and close the file."""
        Service.stopService(self)
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None


def makeJSONLogService(config) -> JSONLogService | None:
    """A L{JSONLogService} for C{config.logJson}, or C{None} if unset."""
    path = getattr(config, "logJson", None)
    if not path or path.strip().lower() == "none":
        return None
    return JSONLogService(path)
