"""Follows `1_managing_resources/create_eks_cluster.py`
of StrongDM's examples (strongdm/strongdm-sdk-python-examples, Apache-2.0,
Copyright StrongDM Inc.). Its body is unchanged; only the client is built elsewhere:
`main(client)`, or `python -m tests.live_api_scripts.create_eks_cluster` with the SDM_API_*
variables (see the package docstring)."""

from typing import Any

import strongdm

certificate_authority = """-----BEGIN CERTIFICATE-----
MIICpjCCAY4CCQCYJT6s+JVzSTANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDDApr
dWJlcm5ldGVzMB4XDTIwMDcxNTE0MjgzN1oXDTIxMDcxNTE0MjgzN1owFTETMBEG
A1UEAwwKa3ViZXJuZXRlczCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEB
AJtI1pfbqy65FihJ6SadnrdDw6IjGJo7icoxcDR9Tn0Ljz7a7CO4VgpDfs/X4ljG
LkGTqDqLXZ61+lssfaUwMFA61McthTZfd6rYLBcxWFmaVqvUL0tguTrrUPuegHXv
IBs827JSH43BXqLgvZCaWYb5PtD+CI9F9bOBm+M+BUufrdS6gUkTqipZdgC8sl8E
SvixPjKPRu4EnBE/cPEMvYzkSpjixs87WKGPR0FM+6SQVr6o14Fs3QNlcElBAi27
U7XL+an/Fj0osEZGDhJ1u/TmmWlW7RopE1YS8gpVxBzQkBmeUU05a9l1f4L8j45E
TFuF5daWkNLZFO08u1GxnlsCAwEAATANBgkqhkiG9w0BAQsFAAOCAQEANyPDqSUZ
nLiOVGg4OWPmXJy3tk7+Mb6j/xOFFKoKfrXJVUB1F5IDMD673ozkhKyNcqfFOEeZ
+E3WC2/CxxwkJfEUrtij8qWMnafvDnaPan86jNkZsz9zvxphqdeA0hsYZF5tPLWT
Sk8uIHuRA36mYhzCrXQ7dhLn4mC147LRcZ73CTi4j4bNyGtCYgYE+Ta1pcrREIHp
PMiZH+tzwXAWeVKh3foHTjeXKAgXhg3Lbqxn6Uq3cejraUMi9b489KKPOlcaQ7wX
FPkubmy3vrhgJySlrfBDtCgFDwSosLniZU479S3oZBsKgPgLe3ELzAw1vLcuIgmd
JrXnKV7Z4r9uWg==
-----END CERTIFICATE-----
"""


def main(client: Any) -> None:
    eks_cluster = strongdm.AmazonEKS(
        name="Example EKS Cluster for Python",
        endpoint="https://A1ADBDD0AE833267869C6ED0476D6B41.gr7.us-east-2.eks.amazonaws.com",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        certificate_authority=certificate_authority,
        region="us-east-1",
        cluster_name="example",
        role_arn="arn:aws:iam::000000000000:role/RoleName",
        healthcheck_namespace="default",
    )

    response = client.resources.create(eks_cluster, timeout=30)

    print("Successfully created EKS cluster.")
    print("\tName:", response.resource.name)
    print("\tID:", response.resource.id)


if __name__ == "__main__":
    from tests.live_api_scripts import client_from_env

    main(client_from_env())
