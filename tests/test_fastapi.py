"""The FastAPI integration, driven through the example app with httpx against the emulator.

Each test runs the app's lifespan in the test's event loop (as a server would in its own),
so the shared client's channels belong to the loop that serves the requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import sdm_async
from examples.fastapi_app import create_app
from sdm_async import errors
from sdm_async.fastapi import (
    PUBLIC_MESSAGES,
    ClientDep,
    error_response,
    exception_handlers,
    install,
    lifespan,
    public_message,
    retry_after,
    status_code_for,
)
from sdm_async.testing import Emulator

ALICE = {"email": "alice@example.com", "first_name": "Alice", "last_name": "Smith"}
BOB = {"email": "bob@example.com", "first_name": "Bob", "last_name": "Jones"}


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app (its lifespan), talk to it over ASGI, stop it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


def example(emu: Emulator, timeout: float | None = 10.0, **options: Any) -> FastAPI:
    """The example app, its client on `emu` with the admin key and `options`."""
    return create_app(lambda: emu.client(**options), timeout=timeout)


def assert_error(resp: httpx.Response, status: int, cls: type[errors.RPCError]) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"detail", "error"}
    assert body["error"] == cls.__name__
    assert body["detail"]
    assert "WWW-Authenticate" not in resp.headers  # never a 401: the client's key is not asked
    return str(body["detail"])


def assert_plain(
    resp: httpx.Response,
    status: int,
    cls: type[errors.RPCError],
    caplog: pytest.LogCaptureFixture,
    internals: list[str],
) -> None:
    """An answer whose detail is the plain message for `cls`, none of the `internals` of
    the SDK error in it; they are in the `sdm_async` log, at warning level."""
    detail = assert_error(resp, status, cls)
    assert detail == PUBLIC_MESSAGES.get(cls, "the StrongDM API failed")
    logged = [r for r in caplog.records if r.name == "sdm_async" and r.levelno == logging.WARNING]
    assert logged, "the SDK error was not logged"
    text = "\n".join(r.getMessage() for r in logged)
    assert cls.__name__ in text and f" {status} " in text
    for internal in internals:
        assert internal not in resp.text and internal not in str(resp.headers)
        assert internal in text, (internal, text)


# -- the example app over the emulator: successes ---------------------------------------------


async def test_user_lifecycle(emu: Emulator) -> None:
    async with serve(example(emu)) as http, emu.client() as admin:
        created = await http.post("/users", json=ALICE)
        assert created.status_code == 201, created.text
        alice = created.json()
        assert {k: alice[k] for k in ALICE} == ALICE
        assert alice["id"] and alice["suspended"] is False and alice["created_at"]
        # It is really in the organisation, as the API tells another client.
        stored = (await admin.accounts.get(alice["id"])).account
        assert isinstance(stored, sdm_async.User) and stored.email == ALICE["email"]

        assert (await http.post("/users", json=BOB)).status_code == 201
        got = await http.get(f"/users/{alice['id']}")
        assert got.status_code == 200 and got.json() == alice

        by_email = await http.get("/users", params={"email": BOB["email"]})
        assert [u["email"] for u in by_email.json()] == [BOB["email"]]
        everyone = await http.get("/users")
        assert sorted(u["email"] for u in everyone.json()) == [ALICE["email"], BOB["email"]]
        assert len((await http.get("/users", params={"limit": 1})).json()) == 1

        deleted = await http.delete(f"/users/{alice['id']}")
        assert deleted.status_code == 204 and deleted.content == b""
        with pytest.raises(errors.NotFoundError):
            await admin.accounts.get(alice["id"])
        assert_error(await http.get(f"/users/{alice['id']}"), 404, errors.NotFoundError)


async def test_roles_and_members(emu: Emulator) -> None:
    async with serve(example(emu)) as http, emu.client() as admin:
        role = (await http.post("/roles", json={"name": "engineers"})).json()
        user = (await http.post("/users", json=ALICE)).json()
        member = await http.post(f"/roles/{role['id']}/members", json={"account_id": user["id"]})
        assert member.status_code == 201, member.text
        body = member.json()
        assert (body["account_id"], body["role_id"]) == (user["id"], role["id"])
        stored = (await admin.account_attachments.get(body["id"])).account_attachment
        assert stored is not None and stored.role_id == role["id"]

        again = await http.post(f"/roles/{role['id']}/members", json={"account_id": user["id"]})
        assert_error(again, 409, errors.AlreadyExistsError)
        nobody = await http.post(f"/roles/{role['id']}/members", json={"account_id": "a-0"})
        assert_error(nobody, 404, errors.NotFoundError)
        no_role = await http.post("/roles/r-0/members", json={"account_id": user["id"]})
        assert_error(no_role, 404, errors.NotFoundError)


# -- every mapping, each from a real cause ----------------------------------------------------


async def test_not_found_is_404(emu: Emulator) -> None:
    async with serve(example(emu)) as http:
        assert_error(await http.get("/users/a-0123456789abcdef"), 404, errors.NotFoundError)
        assert_error(await http.delete("/users/a-0123456789abcdef"), 404, errors.NotFoundError)


async def test_duplicate_email_is_409(emu: Emulator) -> None:
    async with serve(example(emu)) as http:
        assert (await http.post("/users", json=ALICE)).status_code == 201
        shouting = {**BOB, "email": ALICE["email"].upper()}
        detail = assert_error(
            await http.post("/users", json=shouting), 409, errors.AlreadyExistsError
        )
        assert "already exists" in detail


async def test_missing_field_is_400_naming_it(emu: Emulator) -> None:
    async with serve(example(emu)) as http:
        resp = await http.post("/users", json={**ALICE, "first_name": ""})
        assert "first_name" in assert_error(resp, 400, errors.BadRequestError)
        # FastAPI's own validation is untouched: a body that is not a user is still a 422.
        assert (await http.post("/users", json={"email": "x@example.com"})).status_code == 422


async def test_the_servers_own_key_refused_is_502_not_401(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The app's API key is the server's, not the HTTP client's: no 401 (which would ask the
    # client for credentials, RFC 9110), but a bad gateway, the reason in the log.
    wrong = base64.b64encode(os.urandom(32)).decode()

    def factory() -> sdm_async.Client:
        return sdm_async.Client(emu.access_key, wrong, emu.address, True)

    caplog.set_level(logging.WARNING, logger="sdm_async")
    async with serve(create_app(factory)) as http:
        resp = await http.get("/users")
    assert_plain(resp, 502, errors.AuthenticationError, caplog, ["signature"])
    logs = caplog.text
    for secret in (wrong, emu.secret_key):
        assert secret not in resp.text and secret not in str(resp.headers) and secret not in logs
    assert emu.access_key not in resp.text


async def test_the_servers_key_without_the_permission_is_502(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with emu.client() as admin:
        token = sdm_async.Token(name="reader", permissions=[sdm_async.Permission.USER_LIST])
        keys = await admin.accounts.create(token)

    def factory() -> sdm_async.Client:
        return sdm_async.Client(keys.access_key, keys.secret_key, emu.address, True)

    caplog.set_level(logging.WARNING, logger="sdm_async")
    async with serve(create_app(factory)) as http:
        assert (await http.get("/users")).status_code == 200  # the key works for what it may do
        resp = await http.post("/users", json=ALICE)
    # An operator must grant the app's key the permission; the HTTP client can do nothing.
    assert_plain(resp, 502, errors.PermissionError, caplog, ["Accounts.Create"])
    assert keys.access_key not in resp.text and keys.secret_key not in resp.text
    assert keys.secret_key not in caplog.text


async def test_rate_limit_is_429_with_retry_after_from_reset_at(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sdm_async")
    window = 3600.0  # long, so that the window cannot roll over between the calls
    async with Emulator(rate_limit=2, rate_limit_window=window) as emu:
        app = example(emu, retry_rate_limit_errors=False, pace_rate_limits=False)
        async with serve(app) as http:
            assert (await http.get("/users")).status_code == 200
            assert (await http.get("/users")).status_code == 200
            resp = await http.get("/users")
            now = time.time()
    assert_plain(resp, 429, errors.RateLimitError, caplog, ["calls per 3600 s exceeded"])
    assert "rate limit" in resp.json()["detail"]
    window_end = (now // window + 1) * window  # the emulator's fixed windows
    seconds = int(resp.headers["Retry-After"])
    assert 0 <= seconds <= window
    assert abs(seconds - math.ceil(window_end - now)) <= 1
    assert emu.access_key not in resp.text  # the bucket is the key: not sent


async def test_unavailable_after_retries_is_503(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sdm_async")
    async with Emulator(fault_rate=1.0, fault_code="UNAVAILABLE") as flaky:
        retry = sdm_async.RetryPolicy(max_retries=2, base_delay=0.01)
        app = example(flaky, retry=retry)
        async with serve(app) as http:
            resp = await http.get("/users")
            assert app.state.sdm_client.retries == 2  # retried by the client, then answered
    assert_plain(resp, 503, errors.UnavailableError, caplog, ["injected fault"])


async def test_an_unreachable_api_is_503_without_its_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sdm_async")
    secret = base64.b64encode(os.urandom(32)).decode()

    def factory() -> sdm_async.Client:  # nothing listens on port 1: connection refused
        retry = sdm_async.RetryPolicy(max_retries=0)
        return sdm_async.Client("auth-0123456789abcdef", secret, "127.0.0.1:1", True, retry=retry)

    async with serve(create_app(factory, timeout=10)) as http:
        resp = await http.get("/users")
    assert_plain(resp, 503, errors.UnavailableError, caplog, ["127.0.0.1:1"])
    for internal in ("ipv4", "addresses", "refused", "failed to connect"):
        assert internal not in resp.text


async def test_internal_error_is_502(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sdm_async")
    async with Emulator(fault_rate=1.0, fault_code="INTERNAL") as broken:
        retry = sdm_async.RetryPolicy(max_retries=0)
        async with serve(example(broken, retry=retry)) as http:
            resp = await http.post("/users", json=ALICE)
    assert_plain(resp, 502, errors.InternalError, caplog, ["injected fault"])


async def test_deadline_is_504(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sdm_async")
    async with Emulator(latency=2.0) as slow, serve(example(slow, timeout=0.05)) as http:
        started = time.perf_counter()
        resp = await http.get("/users/a-0123456789abcdef")
        assert time.perf_counter() - started < 1.5
    assert_plain(resp, 504, errors.TimeoutError, caplog, [])


async def test_a_request_cut_off_by_shutdown_is_503(caplog: pytest.LogCaptureFixture) -> None:
    # The server shuts down (the lifespan closes the shared client) while a request waits
    # for the API: it is answered 503, not dropped as a cancellation.
    caplog.set_level(logging.WARNING, logger="sdm_async")
    async with Emulator(latency=0.5) as slow:
        app = example(slow)
        async with serve(app) as http:
            request = asyncio.create_task(http.get("/users/a-0123456789abcdef"))
            await asyncio.sleep(0.2)  # in flight at the emulator
            await app.state.sdm_client.close()
            resp = await request
    assert_plain(resp, 503, errors.ClientClosedError, caplog, [])


# -- the mapping itself -----------------------------------------------------------------------


def test_status_codes_of_every_error_class() -> None:
    class Gone(errors.NotFoundError):
        pass

    expected = {
        errors.BadRequestError("m"): 400,
        errors.AuthenticationError("m"): 502,
        errors.PermissionError("m"): 502,
        errors.NotFoundError("m"): 404,
        Gone("m"): 404,
        errors.AlreadyExistsError("m"): 409,
        errors.RateLimitError("m"): 429,
        errors.UnavailableError("m"): 503,
        errors.ClientClosedError("m"): 503,
        errors.TimeoutError("m"): 504,
        errors.InternalError("m"): 502,
        errors.UnknownError("m"): 502,
        errors.RPCError("m", 12): 502,
    }
    for exc, status in expected.items():
        assert status_code_for(exc) == status, type(exc).__name__


def test_only_the_apis_words_about_the_request_are_passed_on() -> None:
    internal = "failed to connect to all addresses; ipv4:127.0.0.1:1: Connection refused"
    passed = [errors.BadRequestError, errors.NotFoundError, errors.AlreadyExistsError]
    for cls in passed:
        assert public_message(cls(internal)) == internal
        assert error_response(cls(internal)).status_code < 500

    class Gone(errors.NotFoundError):
        pass

    assert public_message(Gone("account a-1 not found")) == "account a-1 not found"
    hidden: list[errors.RPCError] = [
        errors.AuthenticationError(internal),
        errors.PermissionError(internal),
        errors.RateLimitError(internal),
        errors.UnavailableError(internal),
        errors.TimeoutError(internal),
        errors.InternalError(internal),
        errors.UnknownError(internal),
        errors.RPCError(internal, 9),
    ]
    for exc in hidden:
        response = error_response(exc)
        assert internal.encode() not in response.body and b"127.0.0.1" not in response.body
        assert public_message(exc) in response.body.decode()
        assert response.status_code in (429, 502, 503, 504)
        assert "www-authenticate" not in response.headers


def test_retry_after_rounds_up_and_never_goes_below_zero() -> None:
    now = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)

    def limited(seconds: float | None) -> errors.RateLimitError:
        reset = None if seconds is None else now + datetime.timedelta(seconds=seconds)
        return errors.RateLimitError("slow down", sdm_async.RateLimitMetadata(reset_at=reset))

    assert retry_after(limited(1.2), now) == 2
    assert retry_after(limited(3.0), now) == 3
    assert retry_after(limited(0.001), now) == 1
    assert retry_after(limited(-5.0), now) == 0
    assert retry_after(limited(None), now) is None
    assert retry_after(errors.RateLimitError("no details"), now) is None
    assert "Retry-After" not in error_response(errors.RateLimitError("no details")).headers


# -- lifespan and dependency ------------------------------------------------------------------


def probe_app(**kwargs: Any) -> FastAPI:
    """An app with one route that reports which client it was handed."""
    app = FastAPI(**kwargs)

    @app.get("/who")
    async def who(client: ClientDep) -> dict[str, Any]:
        await client.accounts.get("a-missing")  # raises NotFoundError
        return {}

    @app.get("/id")
    async def ident(client: ClientDep) -> dict[str, int]:
        return {"id": id(client)}

    return app


async def test_one_client_made_at_startup_shared_and_closed(emu: Emulator) -> None:
    made: list[sdm_async.Client] = []

    def factory() -> sdm_async.Client:
        made.append(emu.client())
        return made[-1]

    app = probe_app()
    install(app, factory)
    assert made == []  # nothing is made before the server starts
    async with serve(app) as http:
        assert len(made) == 1
        ids = {(await http.get("/id")).json()["id"] for _ in range(3)}
        assert ids == {id(made[0])}
        assert_error(await http.get("/who"), 404, errors.NotFoundError)
    assert len(made) == 1
    assert app.state.sdm_client is None
    with pytest.raises(RuntimeError, match="closed"):
        await made[0].accounts.get("a-missing")


async def test_async_factory_and_the_documented_pair(emu: Emulator) -> None:
    async def factory() -> sdm_async.Client:
        return emu.client()

    app = probe_app(lifespan=lifespan(factory), exception_handlers=exception_handlers())
    async with serve(app) as http:
        assert_error(await http.get("/who"), 404, errors.NotFoundError)
        assert isinstance(app.state.sdm_client, sdm_async.Client)


async def test_install_wraps_the_apps_own_lifespan(emu: Emulator) -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        client = app.state.sdm_client  # already open: the app's lifespan may use it
        await client.roles.create(sdm_async.Role(name="made-at-startup"))
        events.append("start")
        yield {"greeting": "hello"}
        events.append("stop")
        await client.roles.create(sdm_async.Role(name="made-at-shutdown"))  # still open

    app = probe_app(lifespan=own)
    install(app, emu.client)
    async with app.router.lifespan_context(app) as state:
        assert state == {"greeting": "hello"}
        assert events == ["start"]
    assert events == ["start", "stop"]
    async with emu.client() as admin:
        names = sorted([r.name async for r in admin.roles.list("")])
    assert names == ["made-at-shutdown", "made-at-startup"]


async def test_a_handler_for_a_subclass_takes_precedence(emu: Emulator) -> None:
    app = probe_app()
    install(app, emu.client)

    @app.exception_handler(errors.NotFoundError)
    async def gone(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"gone": True}, status_code=410)

    async with serve(app) as http:
        resp = await http.get("/who")
    assert (resp.status_code, resp.json()) == (410, {"gone": True})


async def test_default_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("SDM_API_ACCESS_KEY", "auth-0123456789abcdef")
    monkeypatch.setenv("SDM_API_SECRET_KEY", secret)
    monkeypatch.setenv("SDM_API_HOST", "api.example.com:443")
    app = probe_app()
    install(app)
    async with app.router.lifespan_context(app):
        client = app.state.sdm_client
        assert (client.api_access_key, client.host) == (
            "auth-0123456789abcdef",
            "api.example.com:443",
        )

    monkeypatch.delenv("SDM_API_SECRET_KEY")
    app = probe_app()
    install(app)
    with pytest.raises(ValueError, match="SDM_API_SECRET_KEY"):
        async with app.router.lifespan_context(app):
            pass


async def test_misuse_fails_clearly(emu: Emulator) -> None:
    app = probe_app()
    install(app, emu.client)
    with pytest.raises(RuntimeError, match="already installed"):
        install(app, emu.client)

    bare = probe_app()  # the dependency without the lifespan
    transport = httpx.ASGITransport(app=bare)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        with pytest.raises(RuntimeError, match=r"install\(app\)"):
            await http.get("/id")

    wrong = probe_app()
    install(wrong, lambda: "not a client")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match=r"an sdm_async\.Client"):
        async with wrong.router.lifespan_context(wrong):
            pass


def test_importing_sdm_async_does_not_need_fastapi() -> None:
    code = (
        "import sys\n"
        "sys.modules['fastapi'] = None\n"  # as if FastAPI were not installed
        "import sdm_async\n"
        "try:\n"
        "    import sdm_async.fastapi\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'sdm-async[fastapi]'" in out.stdout, out.stderr
