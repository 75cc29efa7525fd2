"""Structured logs: one JSON object per line on stderr.

A line never holds request headers (so never keys). An exception's type, message and
traceback are kept: a 500 must say why in the log, since it does not say why to the client.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson

ACCESS_LOGGER = "granian.access"
ACCESS_FORMAT = "%(method)s %(path)s %(status)d"  # the fields Granian passes; the formatter writes them as JSON


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        if record.name == ACCESS_LOGGER and isinstance(record.args, dict):
            fields = record.args
            entry.update(client=fields.get("addr"), method=fields.get("method"), path=fields.get("path"),
                         status=fields.get("status"), ms=round(float(fields.get("dt_ms", 0.0)), 3))
        else:
            entry["message"] = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["exc_type"] = type(exc).__name__
            entry["exc_message"] = str(exc)
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return orjson.dumps(entry).decode()


def log_config(access_log: bool) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server (Granian's own loggers included)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "_granian": {"handlers": ["default"], "level": "INFO", "propagate": False},
            ACCESS_LOGGER: {"handlers": ["default"], "level": "INFO" if access_log else "WARNING", "propagate": False},
            "predserve": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
