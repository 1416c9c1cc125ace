"""Follows `1_managing_resources/create_ssh_server.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_ssh_server` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    ssh_server = strongdm.SSH(
        name="Example SSH Server for Python", hostname="203.0.113.23", username="example", port=22
    )

    response = client.resources.create(ssh_server, timeout=30)

    print("Successfully created SSH server.")
    print("\tName:", response.resource.name)
    print("\tID:", response.resource.id)
    print("\tPublic Key:", response.resource.public_key)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
