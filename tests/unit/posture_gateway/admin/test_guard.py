"""The admin guard over HTTP: named tokens, roles, the legacy shared token kept to the three
read-only routes, refusals audited and answered with JSON, ``no-store`` everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import create_engine, select

from mdm_core.storage.sql.tables import audit_log
from posture_gateway.admin.guard import (
    LEGACY_ENDPOINTS,
    REQUIRED_ROLE,
    current_admin,
    install_admin_guard,
    require_role,
)
from posture_gateway.admin.principals import Role
from posture_gateway.admin.service import add_admin, disable_admin
from posture_gateway.app import create_app
from posture_gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[4]
SHARED = "s" * 40


def _probe_blueprint() -> Blueprint:
    bp = Blueprint("probe_admin", __name__, url_prefix="/admin/api/probe")
    install_admin_guard(bp)

    @bp.get("/look")
    @require_role(Role.HELPDESK)
    def look() -> ResponseReturnValue:
        return jsonify({"actor": current_admin().actor})

    @bp.post("/<device_id>/wipe")
    @require_role(Role.ADMIN)
    def wipe(device_id: str) -> ResponseReturnValue:
        return jsonify({"wiped": device_id, "by": current_admin().actor})

    return bp


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            policy_dir=ROOT / "policies",
            admin_token=SHARED,  # type: ignore[arg-type]
        )
    )
    app.register_blueprint(_probe_blueprint())
    try:
        yield app
    finally:
        app.extensions["posture"].core.close()


def _tokens(app: Flask) -> dict[str, str]:
    storage = app.extensions["posture"].core.storage
    _, admin = add_admin(storage, "ada", Role.ADMIN, actor="operator:test")
    _, helpdesk = add_admin(storage, "hal", Role.HELPDESK, actor="operator:test")
    return {"admin": admin.value, "helpdesk": helpdesk.value}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit(app: Flask) -> list[tuple[str, str, str, str]]:
    with app.extensions["posture"].core.database.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id)).all()
    return [(r.actor, r.action, r.subject, r.outcome) for r in rows]


def test_named_admins_reach_routes_their_role_allows(app: Flask) -> None:
    tokens = _tokens(app)
    client = app.test_client()
    look = client.get("/admin/api/probe/look", headers=_bearer(tokens["helpdesk"]))
    assert look.status_code == 200 and look.json == {"actor": "admin:hal"}
    assert look.headers["Cache-Control"] == "no-store"
    wipe = client.post("/admin/api/probe/d1/wipe", headers=_bearer(tokens["admin"]))
    assert wipe.status_code == 200 and wipe.json == {"wiped": "d1", "by": "admin:ada"}


def test_helpdesk_is_refused_an_admin_route_and_the_refusal_audited(app: Flask) -> None:
    tokens = _tokens(app)
    before = _audit(app)
    refused = app.test_client().post(
        "/admin/api/probe/d1/wipe", headers=_bearer(tokens["helpdesk"])
    )
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["error"] == "forbidden"
    assert _audit(app)[len(before) :] == [("admin:hal", "admin.probe_admin.wipe", "d1", "refused")]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer " + SHARED,  # the legacy shared token on a new route
        "Bearer pga_nothex_x",
        "Bearer pga_0123456789abcdef_" + "A" * 43,  # well-formed, unknown id
        "bearer  ",
    ],
)
def test_anything_but_a_named_token_is_refused_on_new_routes(
    app: Flask, header: str | None
) -> None:
    _tokens(app)
    headers = {"Authorization": header} if header is not None else {}
    client = app.test_client()
    for method, path in (("GET", "/admin/api/probe/look"), ("POST", "/admin/api/probe/d1/wipe")):
        answer = client.open(path, method=method, headers=headers)
        assert answer.status_code == 401, (header, path)
        assert answer.json is not None and answer.json["error"] == "unauthorized"
        assert answer.headers["Cache-Control"] == "no-store"
        assert "WWW-Authenticate" in answer.headers


def test_a_forged_secret_with_a_real_id_is_refused_and_audited(app: Flask) -> None:
    tokens = _tokens(app)
    prefix, secret = tokens["admin"][:21], tokens["admin"][21:]  # "pga_<16 hex>_", secret
    forged = prefix + ("B" * 43 if secret != "B" * 43 else "C" * 43)
    answer = app.test_client().post("/admin/api/probe/d1/wipe", headers=_bearer(forged))
    assert answer.status_code == 401
    assert _audit(app)[-1] == (
        "admin:ada",
        "admin.authentication",
        "/admin/api/probe/d1/wipe",
        "refused",
    )


def test_a_disabled_admin_is_refused_everywhere(app: Flask) -> None:
    tokens = _tokens(app)
    disable_admin(app.extensions["posture"].core.storage, "ada", actor="operator:test")
    client = app.test_client()
    for path in ("/admin/api/probe/look", "/admin/api/policies"):
        answer = client.get(path, headers=_bearer(tokens["admin"]))
        assert answer.status_code == 401
        assert answer.json is not None and answer.json["error"] == "admin_disabled"


def test_the_shared_token_keeps_the_three_read_only_routes(app: Flask) -> None:
    tokens = _tokens(app)
    client = app.test_client()
    for token in (SHARED, tokens["helpdesk"], tokens["admin"]):
        assert client.get("/admin/api/policies", headers=_bearer(token)).status_code == 200
        sessions = client.get("/admin/api/sessions?user_id=u1", headers=_bearer(token))
        assert sessions.status_code == 200
    assert client.get("/admin/api/policies", headers=_bearer("x" * 40)).status_code == 401
    assert client.get("/admin/api/policies").status_code == 401


def test_without_a_shared_token_the_legacy_routes_need_a_named_admin(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, dev_mode=True, policy_dir=ROOT / "policies"))
    try:
        tokens = _tokens(app)
        client = app.test_client()
        off = client.get("/admin/api/policies", headers=_bearer("x" * 40))
        assert off.status_code == 403
        assert off.json is not None and off.json["error"] == "admin_api_disabled"
        named = client.get("/admin/api/policies", headers=_bearer(tokens["helpdesk"]))
        assert named.status_code == 200
    finally:
        app.extensions["posture"].core.close()


def test_guessing_is_limited_per_address_and_a_valid_token_still_works(app: Flask) -> None:
    """The default: 30 failed authentications a minute from one address, then 429 instead of
    401 (audited once); the real admin, whose token is checked first, is not locked out."""
    tokens = _tokens(app)
    client = app.test_client()
    wrong = tokens["admin"][:21] + "Z" * 43
    for _ in range(30):
        assert client.get("/admin/api/probe/look", headers=_bearer(wrong)).status_code == 401
    for headers in (_bearer(wrong), _bearer("x" * 40), {}):
        limited = client.get("/admin/api/probe/look", headers=headers)
        assert limited.status_code == 429
        assert limited.json == {
            "error": "rate_limited",
            "reason": "too many failed admin authentications from this address",
        }
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.headers["Cache-Control"] == "no-store"
    # the right token from the same address is not a guess
    ok = client.get("/admin/api/probe/look", headers=_bearer(tokens["helpdesk"]))
    assert ok.status_code == 200 and ok.json == {"actor": "admin:hal"}
    assert client.get("/admin/api/policies", headers=_bearer(SHARED)).status_code == 200
    # another address has its own count
    other = client.get(
        "/admin/api/probe/look",
        headers=_bearer(wrong),
        environ_overrides={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert other.status_code == 401
    refusals = [a for a in _audit(app) if a[1] == "ratelimit.refused"]
    assert refusals == [("-", "ratelimit.refused", "admin:src:127.0.0.1", "refused")]


def test_the_limit_is_configurable_and_a_broken_limiter_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mdm_core.domain.infra_errors import InfraError

    app = create_app(
        Settings(
            data_dir=tmp_path,
            dev_mode=True,
            policy_dir=ROOT / "policies",
            admin_auth_failures_per_minute=2,
        )
    )
    app.register_blueprint(_probe_blueprint())
    try:
        tokens = _tokens(app)
        client = app.test_client()
        codes = [client.get("/admin/api/probe/look").status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        limiter = app.extensions["posture"].core.rate_limiter

        def down(*_: object, **__: object) -> bool:
            raise InfraError("redis", "rate limit", "connection refused")

        monkeypatch.setattr(limiter, "allows", down)
        broken = client.get("/admin/api/probe/look", environ_overrides={"REMOTE_ADDR": "192.0.2.9"})
        assert broken.status_code == 503
        assert broken.json is not None and broken.json["error"] == "store_unavailable"
        # a valid token never asks the limiter
        ok = client.get("/admin/api/probe/look", headers=_bearer(tokens["admin"]))
        assert ok.status_code == 200
    finally:
        app.extensions["posture"].core.close()


def test_an_invalid_limit_is_a_configuration_error(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="admin_auth_failures_per_minute"):
        Settings(data_dir=tmp_path, admin_auth_failures_per_minute=0)


def test_a_store_outage_is_503_never_a_pass(app: Flask) -> None:
    tokens = _tokens(app)
    database = app.extensions["posture"].core.database
    database.engine.dispose()
    url = database.engine.url
    # Point the engine at a database that cannot be opened: authentication must fail closed.
    database.engine = create_engine(f"sqlite:////nonexistent-dir/{url.database or 'x'}")
    answer = app.test_client().post("/admin/api/probe/d1/wipe", headers=_bearer(tokens["admin"]))
    assert answer.status_code == 503
    assert answer.json is not None and answer.json["error"] == "store_unavailable"


def test_every_admin_route_declares_its_role(app: Flask) -> None:
    """A view under /admin/api without require_role would open to every named admin,
    helpdesk included: each one declares its role, except the three legacy read-only
    routes the shared token keeps (which any named admin may read)."""
    checked = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin/api"):
            continue
        view = app.view_functions[rule.endpoint]
        if rule.endpoint in LEGACY_ENDPOINTS:
            assert not hasattr(view, REQUIRED_ROLE), rule.endpoint
            continue
        assert isinstance(getattr(view, REQUIRED_ROLE, None), Role), (
            f"{rule.rule} ({rule.endpoint}) has no require_role"
        )
        checked.append(rule.endpoint)
    # The shipped blueprints were walked: devices and wipe requests, offboarding, HR.
    assert {"admin_devices", "offboarding_admin", "hr_admin"} <= {
        e.split(".")[0] for e in checked
    }, checked
