"""The separate metrics listener of ``posture serve`` (``metrics.listen``), as its own process.

``python -m posture_gateway.observability.metrics_server HOST:PORT PARENT_PID`` serves the
multi-process registry (``PROMETHEUS_MULTIPROC_DIR``, inherited from ``posture serve``) on
that address and exits when its parent (the WSGI server that replaced ``posture serve``)
is gone, so it never outlives the server it reports on.
"""

from __future__ import annotations

import os
import sys
import time

from posture_gateway.observability.metrics import serve_metrics

__all__ = ["main"]


def main(argv: list[str]) -> int:
    listen, parent = argv[0], int(argv[1])
    server, _ = serve_metrics(listen)
    try:
        while os.getppid() == parent:
            time.sleep(1)
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":  # pragma: no cover - run by posture serve
    sys.exit(main(sys.argv[1:]))
