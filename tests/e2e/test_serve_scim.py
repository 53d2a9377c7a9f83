"""``posture serve`` (the production entry point, a real WSGI server) with SCIM clients from
a config file: an Okta-style provisioning round over the network, and a bad SCIM setting that
stops the start naming its key."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.services import free_port

POSTURE = [sys.executable, "-m", "posture_gateway.cli.main"]
TOKEN = "serve-scim-" + "x" * 40
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def _env(tmp_path: Path, scim: dict[str, object]) -> dict[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"scim": scim}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTURE_")}
    env.update(
        POSTURE_DATA_DIR=str(tmp_path / "data"), POSTURE_DEV_MODE="true", POSTURE_CONFIG=str(config)
    )
    return env


def test_serve_provisions_over_scim(tmp_path: Path) -> None:
    token_file = tmp_path / "okta.token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, {"clients": [{"id": "okta", "token_file": str(token_file)}]})
    env["POSTURE_PUBLIC_URL"] = url
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*POSTURE, "serve", "--port", str(port), "--workers", "1", "--server", "gunicorn"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                httpx.get(url + "/readyz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url + "/scim/v2", headers=auth, timeout=10) as scim:
            assert scim.get("/Users?startIndex=1&count=2").json()["totalResults"] == 0
            user = scim.post("/Users", json={"schemas": [USER], "userName": "eve@example.com"})
            assert user.status_code == 201, log.read_text(errors="replace")
            assert user.headers["Location"] == f"{url}/scim/v2/Users/{user.json()['id']}"
            uid = user.json()["id"]
            group = scim.post(
                "/Groups",
                json={"schemas": [GROUP], "displayName": "Ops", "members": [{"value": uid}]},
            )
            assert group.status_code == 201
            off = scim.patch(
                f"/Users/{uid}",
                json={
                    "schemas": [PATCH],
                    "Operations": [{"op": "replace", "value": {"active": False}}],
                },
                headers={"If-Match": user.headers["ETag"]},
            )
            assert off.status_code == 200 and off.json()["active"] is False
            assert off.json()["groups"][0]["display"] == "Ops"
            assert scim.delete(f"/Users/{uid}").status_code == 204
            assert scim.get(f"/Groups/{group.json()['id']}").json().get("members") is None
        refused = httpx.get(url + "/scim/v2/Users", headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and refused.headers["content-type"].startswith(
            "application/scim+json"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_a_bad_scim_setting_stops_the_start(tmp_path: Path) -> None:
    for scim, words in (
        ({"clients": [{"id": "okta", "token_file": str(tmp_path / "missing")}]}, "token_file"),
        ({"clients": [{"id": "Bad Id!", "token_sha256": hashlib.sha256(b"x").hexdigest()}]}, "id"),
        ({"clients": [{"id": "okta"}]}, "token_sha256"),
    ):
        done = subprocess.run(
            [*POSTURE, "db", "migrate"], env=_env(tmp_path, scim), capture_output=True, text=True
        )
        assert done.returncode != 0
        assert "scim" in done.stderr + done.stdout and words in done.stderr + done.stdout
