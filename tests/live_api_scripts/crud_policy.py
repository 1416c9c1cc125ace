"""Follows `8_policies/crud_policy.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.crud_policy` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    policy = strongdm.Policy(
        name="forbid-everything",
        description="Forbid everything",
        policy="forbid ( principal, action, resource );",
    )

    create_resp = client.policies.create(policy)
    print("Successfully created a policy to forbid all actions.")
    print("\tID:", create_resp.policy.id)
    print("\tName:", create_resp.policy.name)

    get_resp = client.policies.get(create_resp.policy.id)
    print("Successfully retrieved policy.")
    print("\tID:", get_resp.policy.id)
    print("\tName:", get_resp.policy.name)

    update_policy = get_resp.policy
    update_policy.name = "forbid-one-thing"
    update_policy.description = "forbid connecting to the bad resource"
    update_policy.policy = """forbid (
     principal,
     action == StrongDM::Action::"connect",
     resource == StrongDM::Resource::"rs-123d456789"
);
"""
    update_resp = client.policies.update(update_policy)  # noqa: F841 (as in the example)
    print("Successfully retrieved policy.")
    print("\tID:", get_resp.policy.id)
    print("\tName:", get_resp.policy.name)
    print("\tDescription:", get_resp.policy.description)
    print("\tPolicy:", get_resp.policy.policy)

    client.policies.delete(create_resp.policy.id)

    try:
        client.policies.get(create_resp.policy.id)
    except strongdm.errors.NotFoundError:
        pass


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
