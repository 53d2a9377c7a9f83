"""A gateway server process for the two-process read-model test: create_app under werkzeug.

``python -m tests.e2e.decision_server <data_dir> <port> <public_url> [database_url]``; prints
``ready`` once it listens. Every process of a test shares the data directory (CA, keys) and
the database, as the workers of one deployment do.
"""

from __future__ import annotations

import sys
from pathlib import Path

from werkzeug.serving import make_server

from posture_gateway.app import create_app
from posture_gateway.settings import Settings

__all__ = ["main"]

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"


def main(argv: list[str]) -> None:
    data_dir, port, public_url = Path(argv[0]), int(argv[1]), argv[2]
    database_url = argv[3] if len(argv) > 3 else None
    app = create_app(
        Settings(
            data_dir=data_dir,
            database_url=database_url,
            public_url=public_url,
            policy_dir=POLICY_DIR,
            dev_mode=True,
        )
    )
    server = make_server("127.0.0.1", port, app, threaded=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
