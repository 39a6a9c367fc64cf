"""gcp-storage-emulator on 127.0.0.1, answering as Cloud Storage does where the GCS connector needs it:

    python -m tests.connectors.gcs_emulator PORT

- Cloud Storage answers a failed JSON API request with a JSON error (``{"error": {"code": 404,
  "errors": [{"reason": "notFound"}]}}``); the emulator sends most of its 404s with an empty body. The
  connector decides "no such object" from that error's content (its ``ApiErrorExtractor``) and takes
  an empty one for a failure ("Error getting 'gs://bucket/out' object"), so every error the emulator
  sends without a body gets the one Cloud Storage would send.
- The JSON API gives an object's ``size`` (an int64) as a string; the emulator's ``compose`` (which the
  connector uses to finish an output stream that was synced) gives a number, which the connector's
  JSON parser refuses ("key size ... number type formatted as a JSON number cannot use @JsonString").

This is a fake of the cloud, completed where the connector needs it; the connector is the real one.
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


def with_sizes_as_strings(objects: Any) -> None:
    """Make every object resource the handlers build carry its size as a string."""
    make = objects._make_object_resource

    def make_object_resource(*args: Any, **kwargs: Any) -> Any:
        resource = make(*args, **kwargs)
        resource["size"] = str(resource["size"])
        return resource

    objects._make_object_resource = make_object_resource


def main(port: int) -> None:
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    logging.basicConfig(level=logging.WARNING)
    with_error_bodies(server.Response)
    with_sizes_as_strings(objects)
    emulator = server.create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(int(sys.argv[1]))
