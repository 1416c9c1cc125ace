"""Follows `5_auditing/ssh_replay.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.ssh_replay` with the SDM_API_*
variables (see the package docstring)."""

# ruff: noqa: UP031  (the example's own %-formatting, kept)
import json
import time
from typing import Any


def main(client: Any) -> None:
    resource_name = "example-ssh"
    resources = client.resources.list("name:?", resource_name)
    resource = next(resources)
    print("Queries made against %s" % resource_name)

    queries = client.queries.list("resource_id:?", resource.id)
    for query in queries:
        response = client.snapshot_at(query.timestamp).accounts.get(query.account_id)
        account = response.account
        if query.encrypted:
            print("Skipping encrypted query made by %s at %s" % (account.email, query.timestamp))
            print("See encrypted_query_replay.py for an example of query decryption.")
        elif query.replayable:
            print("Replaying query made by %s at %s" % (account.email, query.timestamp))
            replay_parts = client.replays.list("id:?", query.id)
            for part in replay_parts:
                for event in part.events:
                    print(event.data.decode(errors="replace"))
                    time.sleep(event.duration.total_seconds())
        else:
            command = json.loads(query.query_body).get("command")
            print("Command run by %s at %s: %s" % (account.email, query.timestamp, command))


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
