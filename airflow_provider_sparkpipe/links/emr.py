"""Links to EMR runs in the AWS console: the EMR cluster of a step, an EMR Serverless job run, an EMR on EKS job.

URL builders used by the hooks' ``run_url`` (shown through ``SparkApplicationLink``). Standard
library only: the hook builds them from a run's details, without an AWS call.
"""

from __future__ import annotations


def console_base(region: str) -> str:
    """``https://console.aws.amazon.com`` or the China / GovCloud console, for a region."""
    if region.startswith("cn-"):
        return "https://console.amazonaws.cn"
    if region.startswith("us-gov-"):
        return "https://console.amazonaws-us-gov.com"
    return "https://console.aws.amazon.com"


def emr_cluster_url(region: str, job_flow_id: str) -> str:
    """The cluster's page (its *Steps* tab lists the step), as the Amazon provider's ``EmrClusterLink`` builds it."""
    return f"{console_base(region)}/emr/home?region={region}#/clusterDetails/{job_flow_id}"


def emr_serverless_job_run_url(region: str, application_id: str, job_run_id: str) -> str:
    """The job run's page in the EMR Serverless console (state, logs, Spark UI)."""
    return (
        f"{console_base(region)}/emr/home?region={region}"
        f"#/serverless/applications/{application_id}/job-runs/{job_run_id}"
    )


def emr_on_eks_job_run_url(region: str, virtual_cluster_id: str, job_run_id: str) -> str:
    """The job run in the virtual cluster's page of the EMR console."""
    return f"{console_base(region)}/emr/home?region={region}#/virtual-clusters/{virtual_cluster_id}/jobs/{job_run_id}"
