"""The reference agent's daemon loop with a server that bounds long-polls (issue 7, finding 6).

The server (an ``httpx.MockTransport`` following ``GET /mdm/v1/commands/wait``'s contract)
refuses a wait with ``503 long_poll_unavailable`` + ``Retry-After`` when it has no free slot,
and ends a wait with ``ended: "superseded"`` when the device opened a newer one. The agent
must then fall back to its periodic check-in: no check-in storm on a refusal, no wait loop on
a superseded answer.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from mdm_core.agent.agent import Agent, CheckinResult
from mdm_core.agent.client import CheckinAnswer, ProtocolError

NEXT_CHECKIN_S = 5


class Server:
    def __init__(self, wait_answer: httpx.Response) -> None:
        self.wait_answer = wait_answer
        self.waits = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/mdm/v1/commands/wait"
        assert request.headers.get("Device-Proof")
        self.waits += 1
        return self.wait_answer


def _agent(tmp_path: Path, server: Server) -> tuple[Agent, list[float]]:
    agent = Agent(
        tmp_path / "agent", server_url="http://mdm.test", transport=httpx.MockTransport(server)
    )
    agent.client.device_id = "dev-1"
    checkins: list[float] = []

    def checkin() -> CheckinResult:
        checkins.append(time.monotonic())
        answer = CheckinAnswer(
            commands=[], collect=[], next_checkin_s=NEXT_CHECKIN_S, compliance={}, raw={}
        )
        return CheckinResult(answer=answer, executed=[])

    agent.checkin = checkin  # type: ignore[method-assign]
    return agent, checkins


def _run_for(agent: Agent, seconds: float) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=agent.run, args=(stop,))
    worker.start()
    time.sleep(seconds)
    stop.set()
    worker.join(10)
    assert not worker.is_alive()


def test_a_refused_wait_falls_back_to_periodic_checkin(tmp_path: Path) -> None:
    refused = httpx.Response(
        503,
        json={"error": "long_poll_unavailable", "reason": "full"},
        headers={"Retry-After": "1"},
    )
    server = Server(refused)
    agent, checkins = _agent(tmp_path, server)
    _run_for(agent, 2.5)
    # One check-in (the next is due after 5 s), and the wait retried after the hint.
    assert len(checkins) == 1
    assert 2 <= server.waits <= 4


def test_a_superseded_wait_is_not_repeated_until_the_next_checkin(tmp_path: Path) -> None:
    server = Server(httpx.Response(200, json={"pending": 0, "ended": "superseded"}))
    agent, checkins = _agent(tmp_path, server)
    _run_for(agent, 2.0)
    assert server.waits == 1  # not a loop of waits ending each other
    assert len(checkins) == 1


def test_a_pending_command_checks_in_at_once(tmp_path: Path) -> None:
    server = Server(httpx.Response(200, json={"pending": 1, "ended": "command_queued"}))
    agent, checkins = _agent(tmp_path, server)
    _run_for(agent, 0.5)
    assert len(checkins) >= 2 and server.waits >= 1


def test_a_checkin_request_checks_in_at_once(tmp_path: Path) -> None:
    """``ended: "checkin_requested"`` (the gateway's "Check again"): check in now, not at
    the periodic check-in 5 s later."""
    server = Server(httpx.Response(200, json={"pending": 0, "ended": "checkin_requested"}))
    agent, checkins = _agent(tmp_path, server)
    _run_for(agent, 0.5)
    assert len(checkins) >= 2 and server.waits >= 1


def test_a_refused_identity_stops_the_loop(tmp_path: Path) -> None:
    server = Server(httpx.Response(401, json={"error": "revoked_certificate", "reason": "x"}))
    agent, _ = _agent(tmp_path, server)
    with pytest.raises(ProtocolError) as refused:
        agent.run(threading.Event())
    assert refused.value.status == 401


def test_retry_after_is_parsed() -> None:
    from mdm_core.agent.client import _raise_for

    for header, expected in (("7", 7.0), ("soon", None), ("-3", None)):
        response = httpx.Response(503, json={"error": "e", "reason": "r"})
        response.headers["Retry-After"] = header
        with pytest.raises(ProtocolError) as err:
            _raise_for(response)
        assert err.value.retry_after_s == expected
