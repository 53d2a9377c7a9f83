"""``GET /metrics``: the Prometheus counters of all three packages, protected.

On the main listener ``/metrics`` needs ``Authorization: Bearer <metrics.token>`` (constant
time comparison); with no token configured it refuses every scrape (fail closed, 403). With
``metrics.listen`` set the main listener has no ``/metrics`` (404) and :func:`serve_metrics`
answers on that separate address instead (started by ``posture serve``).

Several worker processes each count their own requests, so ``posture serve`` runs them in
prometheus_client's multi-process mode: :func:`prepare_multiprocess_dir` empties
``<data_dir>/prometheus`` at start and exports ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start (prometheus_client reads it when it is first imported), and a scrape then sums the
files of every worker (:func:`registry`).

Every scrape also reports ``posture_noncompliant_devices_with_live_credentials``, computed then
by one query on the database (:mod:`posture_gateway.observability.live_credentials`); the
separate listener gets the database URL through its environment (``LIVE_CREDENTIALS_DB_ENV``),
never its command line.
"""

from __future__ import annotations

import hmac
import os
import shutil
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from flask import Blueprint, Response, current_app, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_wsgi_server,
)

from mdm_core.policy.repository import PolicyRepository
from mdm_core.storage.sql.database import Database
from posture_gateway.api.openapi import not_json
from posture_gateway.observability.live_credentials import (
    LiveCredentialsCollector,
    credentials_registry,
)
from posture_gateway.observability.settings import MetricsSettings, parse_listen

__all__ = [
    "bp",
    "MULTIPROC_ENV",
    "registry",
    "prepare_multiprocess_dir",
    "serve_metrics",
    "LIVE_CREDENTIALS_DB_ENV",
    "LIVE_CREDENTIALS_POLICY_DIR_ENV",
]

bp = Blueprint("metrics", __name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The database the separate metrics listener computes the live-credentials gauge on.
LIVE_CREDENTIALS_DB_ENV = "POSTURE_METRICS_DATABASE_URL"
#: The policy directory, for the gauge's silent-device cutoff in the separate listener.
LIVE_CREDENTIALS_POLICY_DIR_ENV = "POSTURE_METRICS_POLICY_DIR"


def registry() -> CollectorRegistry:
    """The registry a scrape reads: every worker's files in multi-process mode, else this
    process's default registry."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected, path=directory)  # type: ignore[no-untyped-call]
    return collected


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """Empty (or create) ``<data_dir>/prometheus`` and export it for the workers to come.

    Counts of a previous run are stale files: removed so a restart starts from zero, which
    Prometheus reads as a counter reset."""
    directory = (data_dir / "prometheus").resolve()
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def _settings() -> MetricsSettings:
    settings: MetricsSettings = current_app.extensions["posture"].settings.metrics
    return settings


def _refuse(status: int, code: str, reason: str) -> tuple[Response, int]:
    response = jsonify(error=code, reason=reason)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="posture-metrics"'
    response.headers["Cache-Control"] = "no-store"
    return response, status


@bp.get("/metrics")
@not_json("Prometheus text exposition format")
def metrics_view() -> Response | tuple[Response, int]:
    settings = _settings()
    if not settings.enabled or settings.listen:
        return _refuse(404, "not_found", "metrics are not served on this listener")
    if settings.token is None:
        return _refuse(403, "metrics_token_not_set", "set metrics.token or metrics.listen")
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    expected = settings.token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        return _refuse(401, "unauthorized", "a valid bearer metrics token is required")
    core = current_app.extensions["posture"].core
    database: Database = core.database
    live = credentials_registry(database, core.policies.current)
    body = generate_latest(registry()) + generate_latest(live)
    response = Response(body, mimetype=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def serve_metrics(listen: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve only the metrics on ``listen`` (``host:port``; port 0 picks a free one) in a
    daemon thread; returns the server (``server_port``, ``shutdown()``) and its thread."""
    host, port = parse_listen(listen, allow_any_port=True)
    collected = registry()
    url = os.environ.get(LIVE_CREDENTIALS_DB_ENV)
    if url:  # its own process (metrics_server): registering on its registry is safe
        policy_dir = os.environ.get(LIVE_CREDENTIALS_POLICY_DIR_ENV)
        policies = None
        if policy_dir:  # the silent-device cutoff follows the policy files (reloaded)
            repository = PolicyRepository(Path(policy_dir))
            repository.start()
            policies = repository.current
        collected.register(LiveCredentialsCollector(Database(url), policies=policies))
    server, thread = start_wsgi_server(port, addr=host, registry=collected)
    return server, thread
