"""JSON log lines: one object per record, with the request id when there is one."""

import json
import logging
import re
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Public credentials in paths (share, pixel and click tokens) never reach a log line.
_TOKEN_PATH = re.compile(r"^/(s|t|c)/[^/]+")


def loggable_path(path: str) -> str:
    """`path` as it may be logged: the token of a public route replaced by `[token]`."""
    return _TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/[token]", path)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
