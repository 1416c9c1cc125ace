"""Follows `5_auditing/audit_resource.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.audit_resource` with the SDM_API_*
variables (see the package docstring)."""

# ruff: noqa: UP031  (the example's own %-formatting, kept)
import datetime
import time
from typing import Any

import strongdm


def main(client: Any) -> None:
    started_at = datetime.datetime.utcnow()

    resource = strongdm.Redis(
        name="example-redis",
        hostname="example-redis",
        username="example-username",
    )
    response = client.resources.create(resource)
    resource_id = response.resource.id
    created_at = datetime.datetime.utcnow()
    print("Created resource with ID %s at time %s" % (resource_id, created_at))

    response.resource.name = "example-redis-renamed"
    client.resources.update(response.resource)
    renamed_at = datetime.datetime.utcnow()

    client.resources.delete(resource_id)
    deleted_at = datetime.datetime.utcnow()

    # Audit records may take a few seconds to be processed.
    time.sleep(2)

    try:
        client.snapshot_at(started_at).resources.get(resource_id)
        raise Exception("Resource should not exist before its creation")
    except strongdm.errors.NotFoundError:
        print("Resource does not exist at time %s" % started_at)

    response = client.snapshot_at(created_at).resources.get(resource_id)
    print("Resource had name %s at time %s" % (response.resource.name, created_at))

    response = client.snapshot_at(renamed_at).resources.get(resource_id)
    print("Resource had name %s at time %s" % (response.resource.name, renamed_at))

    try:
        client.snapshot_at(deleted_at).resources.get(resource_id)
        raise Exception("Resource should not exist after its deletion")
    except strongdm.errors.NotFoundError:
        print("Resource does not exist at time %s" % deleted_at)

    history = client.resources_history.list("id:?", resource_id)
    for h in history:
        print("Resource had name %s at time %s" % (h.resource.name, h.timestamp))
        response = client.activities.get(h.activity_id)
        print("\t" + response.activity.description)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
