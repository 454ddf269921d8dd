"""deploy/aws/cloudformation.yaml holds the same policy, CORS, lifecycle and alarm documents
as `storage init`, `storage policy` and `storage monitoring` produce: it is generated from them,
the committed file is that output, and read back (parameters resolved) it equals them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pacs_ext.core.config import Settings
from pacs_ext.provisioning import documents as doc
from pacs_ext.provisioning import monitoring
from pacs_ext.provisioning.cloudformation import reference

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "cloudformation.yaml"
REGENERATE = ".venv/bin/python -m pacs_ext.provisioning.cloudformation > " + str(TEMPLATE)


def test_the_committed_template_is_the_generated_one() -> None:
    assert TEMPLATE.read_text() == reference(), f"out of date: {REGENERATE}"


def _resolve(value: Any, params: dict[str, Any]) -> Any:
    """Ref and Fn::Sub of the template's parameters, as CloudFormation would resolve them."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in params:
            return params[value["Ref"]]
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for name, given in params.items():
                text = text.replace("${" + name + "}", str(given))
            return text
        return {k: _resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return value


def test_read_back_it_holds_the_documents_the_commands_apply() -> None:
    template = yaml.safe_load(TEMPLATE.read_text())
    params = {
        "BucketName": "pacs-masks",
        "AllowedOrigins": ["https://viewer.example.org", "https://pacs.example.org"],
    }
    resources = _resolve(template["Resources"], params)
    # What the commands produce for that bucket and those origins on AWS (no endpoint).
    settings = Settings.model_validate(
        {"server": {"cors_allowed_origins": params["AllowedOrigins"]}}
    )
    assert template["Parameters"]["BucketName"]["Default"] == "pacs-masks"

    assert resources["ServerPolicy"]["Properties"]["PolicyDocument"] == doc.iam_policy(settings)
    bucket_policy = resources["MaskBucketPolicy"]["Properties"]["PolicyDocument"]
    assert bucket_policy == doc.bucket_policy(settings)
    assert doc.has_tls_statement(bucket_policy, settings)

    bucket = resources["MaskBucket"]["Properties"]
    cors = [
        {
            "ID": r["Id"],
            "AllowedHeaders": r["AllowedHeaders"],
            "AllowedMethods": r["AllowedMethods"],
            "AllowedOrigins": r["AllowedOrigins"],
            "ExposeHeaders": r["ExposedHeaders"],
            "MaxAgeSeconds": r["MaxAge"],
        }
        for r in bucket["CorsConfiguration"]["CorsRules"]
    ]
    assert cors == doc.cors_configuration(settings)["CORSRules"]

    def s3_rule(r: dict[str, Any]) -> dict[str, Any]:
        tags = r.get("TagFilters")
        flt = {"And": {"Prefix": r["Prefix"], "Tags": tags}} if tags else {"Prefix": r["Prefix"]}
        out = {"ID": r["Id"], "Filter": flt, "Status": r["Status"]}
        if "Transitions" in r:
            out["Transitions"] = [
                {"Days": t["TransitionInDays"], "StorageClass": t["StorageClass"]}
                for t in r["Transitions"]
            ]
        if "AbortIncompleteMultipartUpload" in r:
            out["AbortIncompleteMultipartUpload"] = r["AbortIncompleteMultipartUpload"]
        return out

    rules = [s3_rule(r) for r in bucket["LifecycleConfiguration"]["Rules"]]
    assert rules == doc.lifecycle_rules(settings)
    assert bucket["PublicAccessBlockConfiguration"] == doc.PUBLIC_ACCESS_BLOCK
    assert "VersioningConfiguration" not in bucket  # versioning off
    wanted = monitoring.metrics_configuration(settings)
    assert bucket["MetricsConfigurations"] == [
        {"Id": wanted["Id"], "Prefix": wanted["Filter"]["Prefix"]}
    ]
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for alarm, expected in zip(alarms, monitoring.alarms(settings), strict=True):
        assert {k: v for k, v in alarm.items() if k != "AlarmActions"} == {
            k: v for k, v in expected.items() if k != "AlarmActions"
        }
