"""Follows `3_managing_roles/role_grant_migration.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.role_grant_migration` with the SDM_API_*
variables (see the package docstring)."""

# ruff: noqa: UP031  (the example's own %-formatting, kept)
import random
from typing import Any

import strongdm


def create_example_resources(client: Any) -> Any:
    # Create a resource (e.g., Redis)
    redis = strongdm.Redis(
        name="exampleRedis-%s" % random.randint(0, 100000),
        hostname="example.com",
        port_override=random.randint(3000, 20000),
        tags={"env": "staging"},
    )
    return client.resources.create(redis).resource


def create_example_role(client: Any, access_rules: Any) -> Any:
    resp = client.roles.create(
        strongdm.Role(name="exampleRole-%s" % random.randint(0, 100000), access_rules=access_rules)
    )
    return resp.role


def create_role_grant_via_access_rules(client: Any) -> None:
    resource1 = create_example_resources(client)
    resource2 = create_example_resources(client)
    role = create_example_role(client, [{"ids": [resource1.id]}])

    # Add Resource2's ID to the Role's Access Rules
    if len(role.access_rules) == 0:
        role.access_rules = [{"ids": []}]
    role.access_rules[0]["ids"].append(resource2.id)
    role = client.roles.update(role).role


def delete_role_grant_via_access_rules(client: Any) -> None:
    resource1 = create_example_resources(client)
    resource2 = create_example_resources(client)
    role = create_example_role(client, [{"ids": [resource1.id, resource2.id]}])

    # Remove the ID of the second resource
    role.access_rules[0]["ids"].remove(resource2.id)
    if len(role.access_rules[0]["ids"]) == 0:
        role.access_rules = []
    role = client.roles.update(role)


def list_role_grants_via_access_rules(client: Any) -> None:
    resource = create_example_resources(client)
    role = create_example_role(client, [{"ids": [resource.id]}])

    # role.access_rules contains each Access Rule associated with the Role
    print(role.access_rules[0]["ids"])


def main(client: Any) -> None:
    # The RoleGrants API has been deprecated in favor of Access Rules.
    # When using Access Rules, the best practice is to grant Resources access based on type
    # and tags. If it is _necessary_ to grant access to specific Resources in the same way as
    # Role Grants did, you can use Resource IDs directly in Access Rules as shown in the
    # following examples.

    create_role_grant_via_access_rules(client)
    delete_role_grant_via_access_rules(client)
    list_role_grants_via_access_rules(client)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
