"""Follows `2_managing_accounts/create_token.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_token` with the SDM_API_*
variables (see the package docstring)."""

from datetime import timedelta
from typing import Any

import strongdm


def main(client: Any) -> None:
    token = strongdm.Token(
        name="python-test-create-token",
        account_type="api",
        duration=timedelta(hours=1),
        permissions=[strongdm.Permission.ROLE_LIST],
    )
    resp = client.accounts.create(token, timeout=30)

    print("Successfully created token.")
    print("\tName:", resp.account.name)
    print("\tID:", resp.account.id)
    print("\tAccess Key:", resp.access_key)
    print("\tSecret Key:", resp.secret_key)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
