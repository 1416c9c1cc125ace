"""Follows `2_managing_accounts/create_service_account.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_service_account` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    service = strongdm.Service(name="example service account")

    response = client.accounts.create(service, timeout=30)

    print("Successfully created service.")
    print("\tName:", response.account.name)
    print("\tID:", response.account.id)
    print("\tToken:", response.token)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
