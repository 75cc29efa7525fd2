"""Running the API under uvicorn (uvloop + httptools), one or several worker processes."""

from __future__ import annotations

import faulthandler
import logging
import os
from typing import Any

import uvicorn

from predserve.serving.app import ServeConfig


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (structured logs). Never includes headers, so never keys."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        entry: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name}
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        else:
            entry["message"] = record.getMessage()
        return orjson.dumps(entry).decode()


def log_config(access_log: bool) -> dict[str, Any]:
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO" if access_log else "WARNING", "propagate": False},
            "predserve": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }


def run_server(config: ServeConfig, host: str, port: int, workers: int = 1, access_log: bool = False) -> None:
    # A fatal signal (a SIGBUS from an LMDB file truncated in the instant between the store's size
    # check and its read) is logged with the Python traceback, here and in spawned workers.
    faulthandler.enable()
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    # Workers are separate processes: they rebuild the app from PREDSERVE_* variables and
    # open the store themselves, after they start.
    os.environ.update(config.to_env())
    uvicorn.run(
        "predserve.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_config=log_config(access_log),
        server_header=False,
        date_header=False,
    )
