"""`pacs-ext storage policy --aws-cli`: the spec's IAM setup as a runnable AWS CLI sequence.

The spec's user (`pacs-mask-uploader` with the inline policy `S3MaskPolicy`) and its keys, or
a role for servers on AWS (EC2 instance profile, ECS task role, EKS IRSA), where no key is
ever written down: the server's keys stay empty and the AWS credential chain finds the role.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from ..core.config import Settings
from .documents import iam_policy

Variant = Literal["user", "ec2", "ecs", "eks"]
TRUSTED_SERVICE = {"ec2": "ec2.amazonaws.com", "ecs": "ecs-tasks.amazonaws.com"}


def _heredoc(path: str, document: dict[str, Any]) -> str:
    return f"cat > {path} <<'JSON'\n{json.dumps(document, indent=2)}\nJSON"


def _trust(variant: Variant, eks_oidc: str, namespace: str, service_account: str) -> dict[str, Any]:
    if variant == "eks":
        subject = f"system:serviceaccount:{namespace}:{service_account}"
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": f"arn:aws:iam::ACCOUNT_ID:oidc-provider/{eks_oidc}"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{eks_oidc}:sub": subject,
                            f"{eks_oidc}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ],
        }
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": TRUSTED_SERVICE[variant]},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def walkthrough(
    settings: Settings,
    variant: Variant = "user",
    *,
    user: str = "pacs-mask-uploader",
    role: str = "pacs-mask-server",
    policy_name: str = "S3MaskPolicy",
    eks_oidc: str = "oidc.eks.REGION.amazonaws.com/id/CLUSTER_ID",
    namespace: str = "pacs",
    service_account: str = "pacs-ext",
) -> str:
    o = settings.object_storage
    bucket, region = o.bucket_name, o.region
    location = (
        ""
        if region == "us-east-1"
        else f" --create-bucket-configuration LocationConstraint={region}"
    )
    lines = [
        "#!/bin/sh",
        f"# pacs-ext on AWS: bucket {bucket} in {region}, server identity: "
        + ("IAM user " + user if variant == "user" else f"IAM role {role} ({variant})"),
        "# Run once, with an administrator's AWS CLI profile (aws configure); `set -e` stops at",
        "# the first refusal (e.g. a user that exists already: skip that step).",
        "set -e",
        "",
        "# 1. The bucket, configured as the server expects (CORS, lifecycle, SSE-S3, public",
        "#    access block, TLS-only policy). `storage init` creates it if missing; to create",
        "#    it by hand instead:",
        f"#    aws s3api create-bucket --bucket {bucket} --region {region}{location}",
        "pacs-ext storage init",
        "",
        "# 2. The least-privilege policy (the same JSON as `pacs-ext storage policy`)",
        _heredoc("pacs-mask-policy.json", iam_policy(settings)),
        "",
    ]
    if variant == "user":
        lines += [
            "# 3. The user, its policy and its keys",
            f"aws iam create-user --user-name {user}",
            f"aws iam put-user-policy --user-name {user} --policy-name {policy_name} "
            "--policy-document file://pacs-mask-policy.json",
            f"aws iam create-access-key --user-name {user}",
            "# Put AccessKeyId and SecretAccessKey of the answer into the server's .env:",
            "#   APP_OBJECT_STORAGE__ACCESS_KEY=AKIA...",
            "#   APP_OBJECT_STORAGE__SECRET_KEY=...",
            "",
            "# 4. Verify (the spec's troubleshooting commands, then the end-to-end check)",
            f"aws iam get-user-policy --user-name {user} --policy-name {policy_name}",
        ]
    else:
        lines += [
            "# 3. The role the server runs as, and its policy (no access keys: leave",
            "#    object_storage.access_key and secret_key empty; the AWS credential chain",
            "#    finds the role)",
            _heredoc("pacs-trust.json", _trust(variant, eks_oidc, namespace, service_account)),
            f"aws iam create-role --role-name {role} "
            "--assume-role-policy-document file://pacs-trust.json",
            f"aws iam put-role-policy --role-name {role} --policy-name {policy_name} "
            "--policy-document file://pacs-mask-policy.json",
        ]
        if variant == "ec2":
            lines += [
                f"aws iam create-instance-profile --instance-profile-name {role}",
                f"aws iam add-role-to-instance-profile --instance-profile-name {role} "
                f"--role-name {role}",
                f"aws ec2 associate-iam-instance-profile --instance-id INSTANCE_ID "
                f"--iam-instance-profile Name={role}",
            ]
        elif variant == "ecs":
            lines += [
                f'# In the task definition: "taskRoleArn": "arn:aws:iam::ACCOUNT_ID:role/{role}"',
            ]
        else:
            lines += [
                f"kubectl -n {namespace} annotate serviceaccount {service_account} "
                f"eks.amazonaws.com/role-arn=arn:aws:iam::ACCOUNT_ID:role/{role}",
                f"# and run the server's pods with serviceAccountName: {service_account}",
            ]
        lines += [
            "",
            "# 4. Verify (the spec's troubleshooting commands, then the end-to-end check)",
            f"aws iam get-role-policy --role-name {role} --policy-name {policy_name}",
        ]
    lines += [
        f"aws s3api get-bucket-policy --bucket {bucket}",
        f"aws s3api get-bucket-cors --bucket {bucket}",
        f"aws s3api get-bucket-location --bucket {bucket}",
        "pacs-ext storage check   # run where the server runs, with its configuration",
    ]
    return "\n".join(lines) + "\n"
