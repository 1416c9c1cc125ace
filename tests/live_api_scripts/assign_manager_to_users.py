"""Follows `2_managing_accounts/assign_manager_to_users.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.assign_manager_to_users` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    user = strongdm.User(
        email="create-user-example@example.com",
        first_name="example",
        last_name="example",
        permission_level=strongdm.PermissionLevel.TEAM_LEADER,
    )
    response = client.accounts.create(user, timeout=30)

    print("Successfully created user.")
    print("\tEmail:", response.account.email)
    print("\tID:", response.account.id)

    user2 = strongdm.User(
        email="create-user2@example.com",
        first_name="example2",
        last_name="example2",
        manager_id=response.account.id,
    )
    response2 = client.accounts.create(user2, timeout=30)
    created_user2 = response2.account

    print("Successfully created user with manager assignment.")
    print(f"\tID: {created_user2.id}")
    print(f"\tManagerID: {created_user2.manager_id}")

    get_resp = client.accounts.get(created_user2.id, timeout=30)
    got_user = get_resp.account

    print("Successfully fetched user.")
    print(f"\tID: {got_user.id}")
    print(f"\tManagerID: {got_user.manager_id}")
    print(f"\tResolvedManagerID: {got_user.resolved_manager_id}")
    print(f"\tSCIM Metadata: {got_user.scim}")

    got_user.manager_id = ""
    update_resp = client.accounts.update(got_user, timeout=30)
    updated_user = update_resp.account

    print("Successfully updated user.")
    print(f"\tID: {updated_user.id}")
    print(f"\tManagerID: {updated_user.manager_id}")


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
