"""Follows `2_managing_accounts/revoke_temp_access.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.revoke_temp_access` with the SDM_API_*
variables (see the package docstring)."""

import datetime
from typing import Any

import strongdm


def main(client: Any) -> None:
    user = strongdm.User(
        email="revoke-temp-grant-example@example.com",
        first_name="example",
        last_name="example",
    )

    user_response = client.accounts.create(user, timeout=30)

    print("Successfully created user.")
    print("\tEmail:", user_response.account.email)
    print("\tID:", user_response.account.id)

    postgres = strongdm.Postgres(
        name="Example Postgres Datasource for Temp Grant Revoke",
        hostname="example.strongdm.com",
        port=5432,
        username="example",
        password="example",
        database="example",
        port_override=19305,
    )

    datasource_response = client.resources.create(postgres, timeout=30)

    print("Successfully created Postgres datasource.")
    print("\tName:", datasource_response.resource.name)
    print("\tID:", datasource_response.resource.id)

    grant = strongdm.AccountGrant(
        account_id=user_response.account.id,
        resource_id=datasource_response.resource.id,
        valid_until=datetime.datetime.now() + datetime.timedelta(minutes=10),
    )

    grant_response = client.account_grants.create(grant, timeout=30)

    print("Successfully created account grant.")
    print("\tID:", grant_response.account_grant.id)

    client.account_grants.delete(grant_response.account_grant.id, timeout=30)
    print("Successfully deleted account grant.")


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
