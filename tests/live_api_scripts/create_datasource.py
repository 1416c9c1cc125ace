"""Follows `1_managing_resources/create_datasource.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_datasource` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    postgres = strongdm.Postgres(
        name="Example Postgres Datasource for Python",
        hostname="example.strongdm.com",
        port=5432,
        username="example",
        password="example",
        database="example",
        port_override=19300,
    )

    response = client.resources.create(postgres, timeout=30)

    print("Successfully created Postgres datasource.")
    print("\tName:", response.resource.name)
    print("\tID:", response.resource.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
