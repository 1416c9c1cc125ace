"""Follows `2_managing_accounts/create_user.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_user` with the SDM_API_*
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


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
