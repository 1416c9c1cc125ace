"""A small FastAPI service over StrongDM users and roles, built on `sdm_async.fastapi`.

    GET    /users?email=...&limit=...   list users (optionally the one with this email)
    POST   /users                       create a user                     -> 201
    GET    /users/{id}                  one user                          (404 if unknown)
    DELETE /users/{id}                  delete a user                     -> 204
    POST   /roles                       create a role                     -> 201
    POST   /roles/{role_id}/members     attach an account to a role       -> 201

SDK errors become HTTP errors (409 for a duplicate email, 429 with Retry-After, 502 when
StrongDM refuses the app's own key or it lacks a permission, 503/504 when the API is down or
slow; the details of those go to the log, not to the client). Run it with any ASGI server,
against StrongDM or against the emulator (`sdm-async emulator` prints its address and key):

    SDM_API_ACCESS_KEY=... SDM_API_SECRET_KEY=... SDM_API_HOST=127.0.0.1:8890 \\
    SDM_API_INSECURE=1 uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel

import sdm_async
from sdm_async.fastapi import ClientDep, ClientFactory, install

DEFAULT_TIMEOUT = 10.0  # seconds an API call may take, retries included, before a 504


class NewUser(BaseModel):
    email: str
    first_name: str
    last_name: str


class UserOut(BaseModel):
    id: str
    email: str
    first_name: str
    last_name: str
    suspended: bool
    created_at: datetime.datetime | None

    @classmethod
    def of(cls, user: sdm_async.User) -> UserOut:
        return cls(
            id=user.id,
            email=user.email,
            first_name=user.first_name,
            last_name=user.last_name,
            suspended=user.suspended,
            created_at=user.created_at,
        )


class NewRole(BaseModel):
    name: str


class RoleOut(BaseModel):
    id: str
    name: str


class NewMember(BaseModel):
    account_id: str


class MemberOut(BaseModel):
    id: str
    account_id: str
    role_id: str


def call_timeout(request: Request) -> float | None:
    """The deadline of each API call, set by `create_app`."""
    timeout: float | None = request.app.state.call_timeout
    return timeout


Timeout = Annotated[float | None, Depends(call_timeout)]

router = APIRouter()


@router.get("/users")
async def list_users(
    client: ClientDep,
    timeout: Timeout,
    email: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[UserOut]:
    found: list[UserOut] = []
    if email:
        pager = client.accounts.list("email:?", email, timeout=timeout)
    else:
        pager = client.accounts.list("", timeout=timeout)
    async with contextlib.aclosing(pager):  # stop fetching pages once we have enough
        async for account in pager:
            if isinstance(account, sdm_async.User):
                found.append(UserOut.of(account))
                if len(found) == limit:
                    break
    return found


@router.post("/users", status_code=201)
async def create_user(new: NewUser, client: ClientDep, timeout: Timeout) -> UserOut:
    user = sdm_async.User(email=new.email, first_name=new.first_name, last_name=new.last_name)
    resp = await client.accounts.create(user, timeout=timeout)
    assert isinstance(resp.account, sdm_async.User)
    return UserOut.of(resp.account)


@router.get("/users/{id}")
async def get_user(id: str, client: ClientDep, timeout: Timeout) -> UserOut:
    resp = await client.accounts.get(id, timeout=timeout)
    if not isinstance(resp.account, sdm_async.User):
        raise HTTPException(404, f"account {id!r} is not a user")
    return UserOut.of(resp.account)


@router.delete("/users/{id}", status_code=204)
async def delete_user(id: str, client: ClientDep, timeout: Timeout) -> None:
    resp = await client.accounts.get(id, timeout=timeout)
    if not isinstance(resp.account, sdm_async.User):
        raise HTTPException(404, f"account {id!r} is not a user")
    await client.accounts.delete(id, timeout=timeout)


@router.post("/roles", status_code=201)
async def create_role(new: NewRole, client: ClientDep, timeout: Timeout) -> RoleOut:
    resp = await client.roles.create(sdm_async.Role(name=new.name), timeout=timeout)
    assert resp.role is not None
    return RoleOut(id=resp.role.id, name=resp.role.name)


@router.post("/roles/{role_id}/members", status_code=201)
async def add_member(
    role_id: str, new: NewMember, client: ClientDep, timeout: Timeout
) -> MemberOut:
    attachment = sdm_async.AccountAttachment(account_id=new.account_id, role_id=role_id)
    resp = await client.account_attachments.create(attachment, timeout=timeout)
    made = resp.account_attachment
    assert made is not None
    return MemberOut(id=made.id, account_id=made.account_id, role_id=made.role_id)


def client_from_env() -> sdm_async.Client:
    """`Client.from_env()`; SDM_API_INSECURE=1 speaks plain-text gRPC (a local emulator)."""
    return sdm_async.Client.from_env(insecure=os.environ.get("SDM_API_INSECURE") == "1")


def create_app(
    client_factory: ClientFactory | None = None, *, timeout: float | None = DEFAULT_TIMEOUT
) -> FastAPI:
    """The app, with one shared client made by `client_factory` (default: from the
    environment) and API calls bounded by `timeout` seconds (None: no deadline)."""
    app = FastAPI(title="sdm_async example")
    app.state.call_timeout = timeout
    install(app, client_factory or client_from_env)
    app.include_router(router)
    return app


app = create_app()
