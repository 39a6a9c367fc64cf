"""The records of ``dag.test()``'s console output, multi-line ones (a folded stack trace, a traceback) whole."""

from __future__ import annotations

import re
from dataclasses import dataclass

# dag.test()'s console records: ``<timestamp> [<level>   ] <message> [<logger>] key=value ...``; a record's
# message may span lines (a folded stack trace), a traceback follows the first line of its record.
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[(\w+)\s*\] ")
_LOGGER_TAIL = re.compile(r" \[([\w.]+)\]((?: \w+=\S*)*)$")


@dataclass(frozen=True)
class Record:
    level: str
    logger: str | None
    message: str


def records(log: str) -> list[Record]:
    """The log records of dag.test()'s output, multi-line ones whole."""
    found: list[list[str]] = []
    for line in log.splitlines():
        if _RECORD_START.match(line):
            found.append([line])
        elif found:
            found[-1].append(line)
    out = []
    for lines in found:
        level = _RECORD_START.match(lines[0]).group(1)  # type: ignore[union-attr]
        lines = [_RECORD_START.sub("", lines[0]), *lines[1:]]
        logger = None
        for index in (len(lines) - 1, 0):  # the logger ends the last line, or the first when a traceback follows
            tail = _LOGGER_TAIL.search(lines[index])
            if tail:
                logger = tail.group(1)
                lines[index] = lines[index][: tail.start()]
                break
        out.append(Record(level, logger, "\n".join(lines).rstrip()))
    return out
