"""Follows `4_managing_gateways/update_gateway.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.update_gateway` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    gateway = strongdm.Gateway(
        name="example-gateway",
        listen_address="gateway.example.com:5555",
    )

    create_response = client.nodes.create(gateway, timeout=30)

    print("Successfully created gateway.")
    print("\tID:", create_response.node.id)
    print("\tName:", create_response.node.name)
    print("\tToken:", create_response.token)

    get_response = client.nodes.get(create_response.node.id, timeout=30)
    gateway = get_response.node

    gateway.name = "example-gateway-updated"

    update_response = client.nodes.update(gateway, timeout=30)

    print("Successfully updated gateway.")
    print("\tID:", update_response.node.id)
    print("\tName:", update_response.node.name)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
