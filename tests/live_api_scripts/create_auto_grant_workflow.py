"""Follows `6_managing_workflows/create_workflow_full_example/create_auto_grant_workflow.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_auto_grant_workflow` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm


def main(client: Any) -> None:
    workflow = strongdm.Workflow(
        name="Create Auto Grant Workflow Python Example",
        description="Workflow Description Python Example",
        auto_grant=True,
        enabled=True,
        access_rules=[
            {
                "tags": {"env": "dev"},
            },
        ],
    )

    workflow_response = client.workflows.create(workflow, timeout=30)
    workflow_id = workflow_response.workflow.id

    print("Successfully created Workflow.")
    print("\tID:", workflow_id)

    role = strongdm.Role(
        name="Role for Auto Grant Workflow Python Example",
    )
    role_response = client.roles.create(role, timeout=30)
    role_id = role_response.role.id

    workflow_role = strongdm.WorkflowRole(
        workflow_id=workflow_id,
        role_id=role_id,
    )
    workflow_role_response = client.workflow_roles.create(workflow_role, timeout=30)

    print("Successfully created WorkflowRole.")
    print("\tID:", workflow_role_response.workflow_role.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
