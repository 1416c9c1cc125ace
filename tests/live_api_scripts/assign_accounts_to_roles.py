"""Follows `2_managing_accounts/assign_accounts_to_roles.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.assign_accounts_to_roles` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    user = strongdm.User(
        email="assign-example@example.com",
        first_name="example",
        last_name="example",
    )

    user_response = client.accounts.create(user, timeout=30)

    print("Successfully created user.")
    print("\tEmail:", user_response.account.email)
    print("\tID:", user_response.account.id)

    role = strongdm.Role(
        name="example role",
    )

    role_response = client.roles.create(role, timeout=30)

    print("Successfully created role.")
    print("\tID:", role_response.role.id)

    grant = strongdm.AccountAttachment(
        account_id=user_response.account.id, role_id=role_response.role.id
    )

    attachment_response = client.account_attachments.create(grant, timeout=30)

    print("Successfully created account attachment.")
    print("\tID:", attachment_response.account_attachment.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
