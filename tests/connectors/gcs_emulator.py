"""gcp-storage-emulator on 127.0.0.1, with the error bodies Cloud Storage sends:

    python -m tests.connectors.gcs_emulator PORT

Cloud Storage answers a failed JSON API request with a JSON error (``{"error": {"code": 404, "errors":
[{"reason": "notFound"}]}}``); the emulator sends most of its 404s with an empty body. The GCS
connector decides "no such object" from that error's content (its ``ApiErrorExtractor``) and takes an
empty one for a failure ("Error getting 'gs://bucket/out' object"), so every error the emulator sends
without a body gets the one Cloud Storage would send. This is a fake of the cloud, completed where the
connector needs it; the connector itself is the real one.
"""

from __future__ import annotations

import logging
import sys
import threading
from http import HTTPStatus
from typing import Any

REASONS = {400: "invalid", 401: "required", 403: "forbidden", 404: "notFound", 409: "conflict", 412: "conditionNotMet"}


def with_error_bodies(response_class: Any) -> None:
    """Make ``response_class.close`` send Cloud Storage's JSON error for a bodiless error status."""
    close = response_class.close

    def close_with_error_body(self: Any) -> None:
        code = int(self.status)
        if code >= 400 and not self._content:
            phrase = HTTPStatus(code).phrase
            reason = REASONS.get(code, "backendError")
            self.json(
                {
                    "error": {
                        "code": code,
                        "message": phrase,
                        "errors": [{"domain": "global", "reason": reason, "message": phrase}],
                    }
                }
            )
        close(self)

    response_class.close = close_with_error_body


def main(port: int) -> None:
    from gcp_storage_emulator import server

    logging.basicConfig(level=logging.WARNING)
    with_error_bodies(server.Response)
    emulator = server.create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
