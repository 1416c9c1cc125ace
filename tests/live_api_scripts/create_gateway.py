"""Follows `4_managing_gateways/create_gateway.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_gateway` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    gateway = strongdm.Gateway(
        name="example-gateway",
        listen_address="gateway.example.com:5555",
    )

    node_response = client.nodes.create(gateway, timeout=30)

    print("Successfully created gateway.")
    print("\tID:", node_response.node.id)
    print("\tToken:", node_response.token)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
