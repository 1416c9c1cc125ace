"""Follows `7_managing_approval_workflows/manual_approval_workflow.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.manual_approval_workflow` with the SDM_API_*
variables (see the package docstring)."""

from datetime import timedelta
from typing import Any

import strongdm


def main(client: Any) -> None:
    user = strongdm.User(
        email="create-approver-example@example.com",
        first_name="Example",
        last_name="Example",
    )
    account_response = client.accounts.create(user, timeout=30)
    account_id = account_response.account.id

    user2 = strongdm.User(
        email="create-approver2-example@example.com",
        first_name="Example",
        last_name="Example",
    )
    account2_response = client.accounts.create(user2, timeout=30)  # noqa: F841 (as in the example)
    account2_id = account_response.account.id

    role = strongdm.Role(
        name="Approval Workflow Role1 Example",
    )
    role_response = client.roles.create(role, timeout=30)
    role_id = role_response.role.id

    approval_workflow = strongdm.ApprovalWorkflow(
        name="Approval Workflow Example Manual",
        description="a test approval workflow",
        approval_mode="manual",
        approval_workflow_steps=[
            strongdm.ApprovalFlowStep(
                approvers=[
                    strongdm.ApprovalFlowApprover(account_id=account_id),
                    strongdm.ApprovalFlowApprover(role_id=role_id),
                ],
                quantifier="all",
                skip_after=timedelta(0),
            ),
            strongdm.ApprovalFlowStep(
                approvers=[
                    strongdm.ApprovalFlowApprover(account_id=account2_id),
                    strongdm.ApprovalFlowApprover(
                        reference=strongdm.ApproverReference.MANAGER_OF_REQUESTER
                    ),
                ],
                quantifier="any",
                skip_after=timedelta(hours=1),
            ),
        ],
    )
    response = client.approval_workflows.create(approval_workflow, timeout=30)
    id = response.approval_workflow.id
    print("Successfully created approval workflow.")
    print("\tID:", id)
    print("\tName:", response.approval_workflow.name)
    print("\tDescription:", response.approval_workflow.description)
    print("\tNum Approval Steps:", len(response.approval_workflow.approval_workflow_steps))

    get_response = client.approval_workflows.get(id)
    got_approval_flow = get_response.approval_workflow
    print("Successfully got approval workflow.")
    print("\tID:", got_approval_flow.id)
    print("\tName:", got_approval_flow.name)
    print("\tApproval Mode:", got_approval_flow.approval_mode)
    print("\tNum Approval Steps:", len(got_approval_flow.approval_workflow_steps))

    updated_approval_workflow = strongdm.ApprovalWorkflow(
        id=id,
        name="Example new name",
        description="a test approval workflow with new description",
        approval_mode="manual",
        approval_workflow_steps=[
            strongdm.ApprovalFlowStep(
                approvers=[
                    strongdm.ApprovalFlowApprover(account_id=account_id),
                ],
                quantifier="all",
            ),
            strongdm.ApprovalFlowStep(
                approvers=[
                    strongdm.ApprovalFlowApprover(role_id=role_id),
                ],
                quantifier="any",
                skip_after=timedelta(hours=1),
            ),
            strongdm.ApprovalFlowStep(
                approvers=[
                    strongdm.ApprovalFlowApprover(account_id=account2_id),
                    strongdm.ApprovalFlowApprover(
                        reference=strongdm.ApproverReference.MANAGER_OF_MANAGER_OF_REQUESTER
                    ),
                ],
                quantifier="any",
                skip_after=timedelta(hours=3),
            ),
        ],
    )
    update_response = client.approval_workflows.update(updated_approval_workflow, timeout=30)
    approval_workflow = update_response.approval_workflow
    print("Successfully update approval workflow.")
    print("\tNew Name:", approval_workflow.name)
    print("\tNew Description:", approval_workflow.description)
    print("\tNum Approval Steps:", len(approval_workflow.approval_workflow_steps))

    approval_workflow.approval_mode = "automatic"
    approval_workflow.approval_workflow_steps = []
    update_response = client.approval_workflows.update(approval_workflow, timeout=30)
    approval_workflow = update_response.approval_workflow
    print("Successfully update approval workflow approval mode.")
    print("\tNew Approval Mode:", approval_workflow.approval_mode)

    client.approval_workflows.delete(approval_workflow.id, timeout=30)
    print("Successfully deleted approval workflow.")


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
