"""Follows `8_policies/find_policy.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.find_policy` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    example_policies = [
        strongdm.Policy(
            name="default-permit-policy",
            description="a default permit policy",
            policy="permit (principal, action, resource);",
        ),
        strongdm.Policy(
            name="permit-sql-select-policy",
            description="a permit sql select policy",
            policy="""permit (principal, action == SQL::Action::"select", resource == Postgres::Database::"*");""",  # noqa: E501
        ),
        strongdm.Policy(
            name="default-forbid-policy",
            description="a default forbid policy",
            policy="forbid (principal, action, resource);",
        ),
        strongdm.Policy(
            name="forbid-connect-policy",
            description="a forbid connect policy",
            policy="""forbid (principal, action == StrongDM::Action::"connect", resource);""",
        ),
        strongdm.Policy(
            name="forbid-sql-delete-policy",
            description="a forbid delete policy on all resources",
            policy="""forbid (principal, action == SQL::Action::"delete", resource == Postgres::Database::"*");""",  # noqa: E501
        ),
    ]

    policies_to_cleanup = []
    for p in example_policies:
        create_resp = client.policies.create(p)
        print("Successfully created Policy.")
        print("\tID:", create_resp.policy.id)
        print("\tName:", create_resp.policy.name)
        policies_to_cleanup.append(create_resp.policy)

    print("Finding all Policies with a name containing 'sql'")
    for p in client.policies.list("name:*sql*"):
        print("\tID: {}\tName:{}".format(p.id, p.name))  # noqa: UP032 (as in the example)

    print("Finding all Policies that forbid")
    for p in client.policies.list("policy:forbid*"):
        print("\tID: {}\tName:{}".format(p.id, p.name))  # noqa: UP032 (as in the example)

    for p in policies_to_cleanup:
        client.policies.delete(p.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
