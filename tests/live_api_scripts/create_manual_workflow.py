"""Follows `6_managing_workflows/create_workflow/create_manual_workflow.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_manual_workflow` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    workflow = strongdm.Workflow(
        name="Create Manual Workflow Python Example",
        description="Workflow Description Python Example",
        access_rules=[
            {
                "tags": {"env": "dev"},
            },
        ],
    )

    workflow_response = client.workflows.create(workflow, timeout=30)

    print("Successfully created Workflow.")
    print("\tID:", workflow_response.workflow.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
