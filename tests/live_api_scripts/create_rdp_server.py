"""Follows `1_managing_resources/create_rdp_server.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_rdp_server` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    rdp_server = strongdm.RDP(
        name="Example RDP Server for Python",
        hostname="example.strongdm.com",
        username="example",
        password="example",
        port=3389,
        port_override=19301,
    )

    response = client.resources.create(rdp_server, timeout=30)

    print("Successfully created RDP server.")
    print("\tName:", response.resource.name)
    print("\tID:", response.resource.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
