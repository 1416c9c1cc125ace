"""Follows `2_managing_accounts/suspend_account.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.suspend_account` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    user = strongdm.User(
        email="suspend-user-example@strongdm.com",
        first_name="example",
        last_name="example",
    )

    response = client.accounts.create(user, timeout=30)

    print("Successfully created user.")
    print("\tEmail:", response.account.email)
    print("\tID:", response.account.id)

    get_response = client.accounts.get(response.account.id, timeout=30)
    account = get_response.account

    account.permission_level = strongdm.PermissionLevel.SUSPENDED

    update_response = client.accounts.update(account, timeout=30)

    print("Successfully suspended account.")
    print("\tID:", update_response.account.id)
    print("\tSuspended:", update_response.account.suspended)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
