"""Keep dlt's log format out of the Prefect UI.

`PREFECT_LOGGING_EXTRA_LOGGERS=dlt,flows` attaches Prefect's handlers (the *shared* instances
of the `prefect.extra` logger, among them the API handler that sends every run log to the
server) to dlt's logger. When dlt initialises its runtime it calls `setFormatter` on the first
handler of its logger (`dlt.common.logger._create_logger`), which is then Prefect's shared API
handler: from that moment every message of every Prefect logger in the process reaches the UI
with dlt's `time|[LEVEL]|pid|thread|logger|file|...` prefix. Terminal output is not affected
(the console handler is not that first handler), which is why nobody sees it locally.

The fix: give dlt a first handler of its own, one that drops records, for dlt to format. The
Prefect handlers behind it keep their (plain message) format and still receive dlt's records.
"""

from __future__ import annotations

import logging
import threading

DLT_LOGGER = "dlt"
_lock = threading.Lock()


class DltFormatterSlot(logging.NullHandler):
    """The handler dlt sets its formatter on; it emits nothing."""


def keep_prefect_log_format(logger_name: str = DLT_LOGGER) -> None:
    """Idempotent: make a `DltFormatterSlot` the first handler of dlt's logger, and undo a
    formatter dlt already put on a Prefect handler (e.g. in a long-lived worker process)."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger(logger_name)
    with _lock:
        if not (logger.handlers and isinstance(logger.handlers[0], DltFormatterSlot)):
            logger.handlers.insert(0, DltFormatterSlot())
        for handler in logger.handlers[1:]:
            formatter = handler.formatter
            # Prefect's API handler has no formatter of its own (plain message).
            if (
                isinstance(handler, APILogHandler)
                and formatter is not None
                and type(formatter).__module__.startswith("dlt")
            ):
                handler.setFormatter(None)
