"""Follows `2_managing_accounts/rotate_token.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.rotate_token` with the SDM_API_*
variables (see the package docstring)."""

from datetime import timedelta
from typing import Any

import strongdm


def main(client: Any) -> None:
    token = strongdm.Token(
        name="python-test-rotate-token",
        account_type="api",
        duration=timedelta(hours=1),
        permissions=[strongdm.Permission.ROLE_LIST],
    )
    resp = client.accounts.create(token, timeout=30)
    account = resp.account

    print("Successfully created token.")
    print("\tName:", resp.account.name)
    print("\tID:", resp.account.id)

    resp = client.accounts.list("name:" + account.name)
    accounts = [account for account in resp]
    if len(accounts) != 1:
        print("Get token by name returned more than one or no results")

    old_token = accounts[0]

    deprecated_name = old_token.name + "-deprecated"
    account.name = deprecated_name
    resp = client.accounts.update(account, timeout=30)
    account = resp.account
    print("Successfully updated old token name.")

    new_token = strongdm.Token(
        name=old_token.name,
        account_type=old_token.account_type,
        duration=timedelta(hours=1),
        permissions=old_token.permissions,
    )
    resp = client.accounts.create(new_token, timeout=30)
    account = resp.account

    print("Successfully created new token")
    print("\tName:", resp.account.name)
    print("\tID:", resp.account.id)

    client.accounts.delete(old_token.id, timeout=30)
    print("Successfully rotated token.")


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
