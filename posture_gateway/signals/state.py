"""The per-app state of the signals transmitter (``app.extensions["posture_signals"]``)."""

from __future__ import annotations

from dataclasses import dataclass

from posture_gateway.integrations.state import AccessTokenVerifier
from posture_gateway.signals.delivery import DeliveryWorker
from posture_gateway.signals.poll import PollService
from posture_gateway.signals.settings import SignalsSettings
from posture_gateway.signals.streams import StreamService
from posture_gateway.signals.transmitter import Transmitter

__all__ = ["SignalsState"]


@dataclass(frozen=True)
class SignalsState:
    settings: SignalsSettings
    issuer: str
    public_url: str
    verifier: AccessTokenVerifier
    transmitter: Transmitter
    streams: StreamService
    poll: PollService
    worker: DeliveryWorker

    def close(self) -> None:
        self.worker.stop()
        self.worker.http.close()
