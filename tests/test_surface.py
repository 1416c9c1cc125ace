"""Everything public in the official SDK exists in sdm_async under the same name."""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import sdm_async
from sdm_async import errors

from .conftest import ACCESS_KEY, SECRET, reference_file


def _surface() -> dict[str, Any]:
    return json.loads(reference_file("official-sdk-surface.json").read_text())  # type: ignore[no-any-return]


def _params(signature: str) -> list[str]:
    """'(self, filter, *args, timeout=None)' -> ['filter', '*args', 'timeout=None']."""
    inner = signature.strip()[1:-1]
    return [p.strip() for p in inner.split(",") if p.strip() and p.strip() != "self"]


def _our_params(fn: Any) -> list[str]:
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
        elif p.default is not p.empty:
            out.append(f"{p.name}={p.default!r}")
        else:
            out.append(p.name)
    return out


def _check_services(attrs: dict[str, Any], client: Any, missing: list[str]) -> None:
    for attr, info in attrs.items():
        service = getattr(client, attr, None)
        if service is None:
            missing.append(f"attribute {attr}")
            continue
        if type(service).__name__ != info["class"]:
            missing.append(f"{attr}: class {type(service).__name__} != {info['class']}")
        for method, signature in info["methods"].items():
            fn = getattr(service, method, None)
            if fn is None:
                missing.append(f"method {attr}.{method}")
            elif _our_params(fn) != _params(signature):
                missing.append(f"{attr}.{method}{signature} != {_our_params(fn)}")


def test_surface_parity_counts_nothing_missing() -> None:
    surface = _surface()
    client = sdm_async.Client(ACCESS_KEY, SECRET, "127.0.0.1:1", True)
    missing: list[str] = []
    _check_services(surface["client_attributes"], client, missing)
    import datetime

    snapshot = client.snapshot_at(datetime.datetime.now(datetime.timezone.utc))
    _check_services(surface["snapshot_client_attributes"], snapshot, missing)
    for name, info in surface["models"].items():
        cls = getattr(sdm_async, name, None)
        if cls is None:
            missing.append(f"model {name}")
            continue
        if info["slots"] is None:  # ResourceType: an Enum in both SDKs
            continue
        if sorted(cls.__slots__) != sorted(info["slots"]):
            missing.append(f"{name} attributes {sorted(set(info['slots']) ^ set(cls.__slots__))}")
        params = [p for p in inspect.signature(cls).parameters]
        if sorted(params) != sorted(info["init_params"]):
            missing.append(f"{name} constructor parameters")
    for name, values in surface["constants"].items():
        cls = getattr(sdm_async, name, None)
        if cls is None:
            missing.append(f"constants {name}")
            continue
        for key, value in values.items():
            if getattr(cls, key, None) != value:
                missing.append(f"constant {name}.{key}")
    for name, info in surface["errors"].items():
        cls = getattr(errors, name, None)
        if cls is None:
            missing.append(f"error {name}")
            continue
        for base in info["bases"]:
            if base not in {b.__name__ for b in cls.__mro__}:
                missing.append(f"error {name} base {base}")
    assert missing == [], f"{len(missing)} missing or different: {missing[:20]}"


def test_legacy_services_and_models_exist() -> None:
    client = sdm_async.Client(ACCESS_KEY, SECRET, "127.0.0.1:1", True)
    for attr in ("role_attachments", "role_grants"):
        service = getattr(client, attr)
        for method in ("create", "get", "delete", "list"):
            assert callable(getattr(service, method))
    assert sdm_async.RoleAttachment(composite_role_id="r-1").composite_role_id == "r-1"
    assert sdm_async.RoleGrant(resource_id="rs-1").resource_id == "rs-1"


def test_all_is_complete_and_importable() -> None:
    for name in sdm_async.__all__:
        assert hasattr(sdm_async, name), name
    public = {n for n in dir(sdm_async) if re.match(r"^[A-Z]", n)}
    assert public <= set(sdm_async.__all__) | {"Any"}
