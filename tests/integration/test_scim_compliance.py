"""The independent compliance checks of scim2-tester (python-scim), strict, against a real
server: the app factory under werkzeug's threaded HTTP server on an ephemeral port, reached
over the network by scim2-client's httpx2 engine with response validation on.

Strict means every check's status is SUCCESS (a MUST/MUST NOT met): no ERROR or CRITICAL,
and also no SKIPPED, COMPLIANT, ACCEPTABLE or DEVIATION — every check runs (discovery, CRUD,
PATCH add/remove/replace, attributes on GET/list/.search, unknown URLs) and passes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from flask import Flask
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server
from werkzeug.serving import make_server

from posture_gateway.app import create_app
from posture_gateway.settings import Settings
from tests.e2e.live_server import POLICY_DIR
from tests.integration.scim_fixtures import OKTA_TOKEN, scim_settings
from tests.services import free_port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Flask]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(
        Settings.model_validate(
            {
                "data_dir": tmp_path / "data",
                "dev_mode": True,
                "public_url": url,
                "policy_dir": POLICY_DIR,
                "scim": scim_settings(tmp_path),
            }
        )
    )
    http = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, app
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=10)
        app.extensions["posture"].core.close()


def test_scim2_tester_strict(server: tuple[str, Flask]) -> None:
    url, _ = server
    with httpx2.Client(
        base_url=url + "/scim/v2", headers={"Authorization": f"Bearer {OKTA_TOKEN}"}
    ) as http:
        results = check_server(SyncSCIMClient(http), raise_exceptions=False)
    failures = [
        f"{r.status.name} {r.resource_type or '-'} {r.title}: {r.reason}"
        for r in results
        if r.status is not Status.SUCCESS
    ]
    assert not failures, "\n".join(failures)
    counts = Counter(r.resource_type for r in results)
    # every resource type was exercised, not only discovery
    assert counts["User"] >= 50 and counts["Group"] >= 15, counts
