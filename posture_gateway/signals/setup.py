"""Builds the signals transmitter and registers it on an app.

:func:`build` (called by :func:`posture_gateway.wiring.build_services`, after the OpenID
provider) checks the ``signals`` settings against the provider (each receiver a confidential
client of ``oidc.clients_file``; an RSA signing key of >= 2048 bits) and raises ``ConfigError``
naming the key otherwise; it then registers the outbox listener on the core's storage, so from
that moment every unit of work queues its SETs. :func:`register` installs the state, the
blueprint, and starts the delivery worker in served workers (``POSTURE_SERVE_WORKER=1``; CLI
commands and tests that build an app do not deliver unless asked).
"""

from __future__ import annotations

import atexit
import os

from flask import Flask

from mdm_core.runtime import MdmCore
from posture_gateway.integrations.state import AccessTokenVerifier
from posture_gateway.oidc.server import OIDCProvider
from posture_gateway.settings import ConfigError, Settings
from posture_gateway.signals import api
from posture_gateway.signals.delivery import DeliveryWorker, make_http
from posture_gateway.signals.poll import PollService
from posture_gateway.signals.sets import check_signing_key
from posture_gateway.signals.settings import SCOPE_MANAGE, SCOPE_READ, SignalsSettings
from posture_gateway.signals.state import SignalsState
from posture_gateway.signals.streams import (
    StreamService,
    check_endpoint_url,
    keep_configured_streams,
)
from posture_gateway.signals.transmitter import Transmitter
from posture_gateway.signals.vocabulary import EVENTS_SUPPORTED
from posture_gateway.signing.key_ring import KeyRingError

__all__ = ["build", "register", "machine_scopes", "SERVE_WORKER_ENV"]

SERVE_WORKER_ENV = "POSTURE_SERVE_WORKER"


def machine_scopes(settings: SignalsSettings) -> dict[str, tuple[str, ...]]:
    """The client-credentials scopes each receiver may obtain."""
    return {r.client_id: (SCOPE_MANAGE, SCOPE_READ) for r in settings.receivers}


def _check(settings: SignalsSettings, provider: OIDCProvider, *, dev_mode: bool) -> None:
    for i, receiver in enumerate(settings.receivers):
        client = provider.clients.get(receiver.client_id)
        where = f"signals.receivers.{i}.client_id"
        if receiver.push_endpoint is not None:
            try:
                check_endpoint_url(receiver.push_endpoint, dev_mode=dev_mode)
            except ValueError as exc:
                raise ConfigError(f"signals.receivers.{i}.push_endpoint: {exc}") from exc
            unknown = sorted(set(receiver.events) - set(EVENTS_SUPPORTED))
            if unknown:
                raise ConfigError(f"signals.receivers.{i}.events: unsupported {unknown}")
            if client is None:
                continue  # a push-only receiver (Okta) needs no OAuth client
        if client is None:
            raise ConfigError(
                f"{where}: {receiver.client_id!r} is not a client of oidc.clients_file"
            )
        if client.is_public:
            raise ConfigError(
                f"{where}: {receiver.client_id!r} is a public client (needs a secret)"
            )
    if settings.receivers:
        try:
            check_signing_key(provider.keys)
        except (ValueError, KeyRingError) as exc:
            raise ConfigError(f"signals: {exc}") from exc


def build(
    settings: Settings, core: MdmCore, provider: OIDCProvider, verifier: AccessTokenVerifier
) -> SignalsState:
    sig = settings.signals
    _check(sig, provider, dev_mode=settings.dev_mode)
    issuer = provider.issuer.issuer
    transmitter = Transmitter(sig, issuer=issuer)
    worker = DeliveryWorker(sig, database=core.database, keys=provider.keys, http=make_http(sig))
    transmitter.on_commit(worker.kick)
    core.storage.add_outbox_listener(transmitter.outbox_listener)
    streams = StreamService(
        settings=sig,
        storage=core.storage,
        transmitter=transmitter,
        issuer=issuer,
        poll_base_url=f"{issuer}/ssf/poll",
        dev_mode=settings.dev_mode,
    )
    keep_configured_streams(streams, sig)
    return SignalsState(
        settings=sig,
        issuer=issuer,
        public_url=issuer,
        verifier=verifier,
        transmitter=transmitter,
        streams=streams,
        poll=PollService(settings=sig, storage=core.storage, keys=provider.keys),
        worker=worker,
    )


def register(app: Flask, st: SignalsState, *, start_worker: bool | None = None) -> None:
    app.extensions["posture_signals"] = st
    app.register_blueprint(api.bp)
    if start_worker is None:
        start_worker = os.environ.get(SERVE_WORKER_ENV) == "1"
    if start_worker:
        st.worker.start()
        atexit.register(st.worker.stop)
