#!/usr/bin/env python3
"""SDK conformance: the official Huawei Cloud SDKs against `dli-gitops emulator`.

Starts the emulator binary on port 0, reads its endpoint line, and drives every DLI Flink, DLF
and OBS call the project uses through huaweicloudsdkdli / huaweicloudsdkdlf / esdk-obs-python,
asserting on the parsed responses. Exits non-zero on the first failure.

Usage: python tests/sdk/conformance.py [path/to/dli-gitops]
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions as sdk_exceptions
from huaweicloudsdkdli.v1 import DliClient
from huaweicloudsdkdli.v1 import model as dli
from huaweicloudsdkdlf.v1 import DlfClient
from huaweicloudsdkdlf.v1 import model as dlf
from obs import ObsClient

DEV_AK = "DLIGITOPSDEVACCESSKEY"
DEV_SK = "dli-gitops-dev-secret-key-not-for-production"
DEV_PROJECT = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OTHER_AK = "CONFORMANCEOTHERACCESSKEY"
OTHER_SK = "conformance-other-secret"
OTHER_PROJECT = "ffffeeeeddddccccbbbbaaaa99998888"

CONFIG = f"""
credentials:
  - {{access_key: {DEV_AK}, secret_key: {DEV_SK}, project_id: {DEV_PROJECT}}}
  - {{access_key: {OTHER_AK}, secret_key: {OTHER_SK}, project_id: {OTHER_PROJECT}}}
delays: {{submit_ms: 300, cancel_ms: 200, savepoint_ms: 200, dlf_task_ms: 300}}
buckets: [dli-gitops-staging, dli-gitops-backups, dli-gitops-savepoints]
"""

STEPS = []


def step(name):
    STEPS.append(name)
    print(f"-- {name}", flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def expect_error(call, status, code):
    try:
        call()
    except sdk_exceptions.ClientRequestException as error:
        check(error.status_code == status, f"expected HTTP {status}, got {error.status_code}: {error}")
        check(error.error_code == code, f"expected {code}, got {error.error_code}: {error.error_msg}")
        check(error.request_id, "error responses carry X-Request-Id")
        return error
    raise AssertionError(f"expected {code}, but the call succeeded")


def dli_client(endpoint, ak=DEV_AK, sk=DEV_SK, project=DEV_PROJECT):
    credentials = BasicCredentials(ak, sk, project)
    return DliClient.new_builder().with_credentials(credentials).with_endpoints([endpoint]).build()


def dlf_client(endpoint):
    credentials = BasicCredentials(DEV_AK, DEV_SK, DEV_PROJECT)
    return DlfClient.new_builder().with_credentials(credentials).with_endpoints([endpoint]).build()


def wait_status(client, job_id, wanted, timeout=15):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        detail = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=job_id)).job_detail
        if not seen or seen[-1] != detail.status:
            seen.append(detail.status)
        if detail.status == wanted:
            return detail, seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {wanted}; saw {seen}")


def dli_steps(endpoints, obs_client):
    client = dli_client(endpoints["dli"])

    step("DLI create a Flink SQL job")
    created = client.create_flink_sql_job(dli.CreateFlinkSqlJobRequest(body=dli.CreateFlinkSqlJobRequestBody(
        name="clickstream-agg", desc="Per-minute click aggregates", queue_name="flink_queue",
        sql_body="INSERT INTO sink SELECT * FROM source;", run_mode="exclusive_cluster",
        cu_number=4, parallel_number=2, checkpoint_enabled=True, checkpoint_mode=1,
        checkpoint_interval=60, obs_bucket="dli-gitops-savepoints", log_enabled=True,
        runtime_config='[{"key":"table.exec.state.ttl","value":"1h"}]', flink_version="1.15",
        tags=[dli.Tag(key="managed-by", value="dli-gitops")])))
    check(created.is_success == "true", f"create is_success: {created.is_success!r}")
    sql_id = created.job.job_id
    check(isinstance(sql_id, int) and created.job.status_name == "job_init", f"create job: {created.job}")

    step("DLI create a Flink Jar job")
    jar = client.create_flink_jar_job(dli.CreateFlinkJarJobRequest(body=dli.CreateFlinkJarJobRequestBody(
        name="fraud-detector", queue_name="flink_queue", entrypoint="obs://dli-gitops-staging/app.jar",
        main_class="com.example.Fraud", dependency_jars=["obs://dli-gitops-staging/dep.jar"],
        cu_number=2, parallel_number=1)))
    jar_id = jar.job.job_id
    check(jar_id != sql_id, "ids differ")

    step("DLI duplicate name is refused")
    expect_error(lambda: client.create_flink_sql_job(dli.CreateFlinkSqlJobRequest(
        body=dli.CreateFlinkSqlJobRequestBody(name="clickstream-agg"))), 400, "DLI.0006")

    step("DLI list with paging and filters")
    listed = client.list_flink_jobs(dli.ListFlinkJobsRequest(limit=1, offset=0))
    check(listed.job_list.total_count == 2 and len(listed.job_list.jobs) == 1, f"paging: {listed.job_list}")
    listed = client.list_flink_jobs(dli.ListFlinkJobsRequest(name="clickstream", show_detail=True, limit=100))
    check([job.name for job in listed.job_list.jobs] == ["clickstream-agg"], "name filter")
    check(listed.job_list.jobs[0].job_config.cu_number == 4, "show_detail includes job_config")
    listed = client.list_flink_jobs(dli.ListFlinkJobsRequest(job_type="flink_jar_job", tags=None))
    check([job.job_id for job in listed.job_list.jobs] == [jar_id], "job_type filter")
    listed = client.list_flink_jobs(dli.ListFlinkJobsRequest(tags="managed-by=dli-gitops"))
    check([job.job_id for job in listed.job_list.jobs] == [sql_id], "tags filter")
    expect_error(lambda: client.list_flink_jobs(dli.ListFlinkJobsRequest(limit=101)), 400, "DLI.0001")

    step("DLI show detail")
    detail = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=sql_id))
    check(detail.is_success == "true", "show is_success")
    job = detail.job_detail
    check(job.status == "job_init" and job.queue_name == "flink_queue", f"detail: {job.status}")
    check(job.job_config.checkpoint_mode == "exactly_once", "checkpoint_mode reads back as a name")
    check(json.loads(job.job_config.runtime_config) == [{"key": "table.exec.state.ttl", "value": "1h"}],
          "runtime_config reads back as a JSON string")
    check(len(str(job.create_time)) == 13 and len(str(job.update_time)) == 13, "13-digit millisecond times")
    expect_error(lambda: client.show_flink_job(dli.ShowFlinkJobRequest(job_id=999999999)), 400, "DLI.16001")

    step("DLI update SQL and Jar jobs")
    updated = client.update_flink_sql_job(dli.UpdateFlinkSqlJobRequest(
        job_id=sql_id, body=dli.UpdateFlinkSqlJobRequestBody(cu_number=8, checkpoint_mode=2)))
    check(updated.is_success == "true" and updated.job.update_time >= job.update_time, "sql update")
    detail = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=sql_id)).job_detail
    check(detail.job_config.cu_number == 8 and detail.job_config.checkpoint_mode == "at_least_once",
          "update applied, other fields kept")
    check(detail.job_config.parallel_number == 2, "update keeps unspecified fields")
    client.update_flink_jar_job(dli.UpdateFlinkJarJobRequest(
        job_id=jar_id, body=dli.UpdateFlinkJarJobRequestBody(main_class="com.example.Fraud2")))
    check(client.show_flink_job(dli.ShowFlinkJobRequest(job_id=jar_id)).job_detail.main_class == "com.example.Fraud2",
          "jar update")

    step("DLI run and wait for job_running")
    ran = client.batch_run_flink_jobs(dli.BatchRunFlinkJobsRequest(
        body=dli.BatchRunFlinkJobsRequestBody(job_ids=[sql_id], resume_savepoint=False)))
    check(len(ran.body) == 1 and ran.body[0].is_success == "true", f"run answer: {ran.body}")
    _, seen = wait_status(client, sql_id, "job_running")
    check(seen[0] == "job_submitting", f"run passes through job_submitting: {seen}")

    step("DLI a running job takes only the hot fields")
    expect_error(lambda: client.update_flink_sql_job(dli.UpdateFlinkSqlJobRequest(
        job_id=sql_id, body=dli.UpdateFlinkSqlJobRequestBody(cu_number=6))), 400, "DLI.0001")
    client.update_flink_sql_job(dli.UpdateFlinkSqlJobRequest(
        job_id=sql_id, body=dli.UpdateFlinkSqlJobRequestBody(smn_topic="alerts", resume_max_num=3)))
    hot = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=sql_id)).job_detail
    check(hot.status == "job_running" and hot.job_config.smn_topic == "alerts", f"hot update: {hot.status}")

    step("DLI the v2 resource model and the service-filled fields")
    v2 = client.create_flink_sql_job(dli.CreateFlinkSqlJobRequest(body=dli.CreateFlinkSqlJobRequestBody(
        name="v2-job", queue_name="flink_queue", sql_body="INSERT INTO sink SELECT * FROM source;",
        run_mode="exclusive_cluster", resource_config_version="v2", flink_version="1.17",
        flink_log_config='{"root_logger_level":"INFO"}',
        resource_config=dli.ResourceConfig(max_slot=2, parallel_number=4,
            taskmanager_resource_spec=dli.ResourceSpec(cpu=1.5, memory="4G")))))
    shown = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=v2.job.job_id)).job_detail
    resources = shown.job_config.resource_config
    check(shown.job_config.resource_config_version == "v2" and resources.max_slot == 2
          and resources.taskmanager_resource_spec.cpu == 1.5, f"v2 read back: {resources}")
    check(shown.job_config.flink_log_config == '{"root_logger_level":"INFO"}', "flink_log_config read back")
    bare = client.create_flink_jar_job(dli.CreateFlinkJarJobRequest(body=dli.CreateFlinkJarJobRequestBody(
        name="bare-jar", entrypoint="obs://dli-gitops-staging/app.jar")))
    shown = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=bare.job.job_id)).job_detail
    check(shown.queue_name and shown.job_config.feature == "basic" and shown.job_config.flink_version,
          f"service-filled: {shown.queue_name} {shown.job_config.feature}")
    expect_error(lambda: client.create_flink_sql_job(dli.CreateFlinkSqlJobRequest(
        body=dli.CreateFlinkSqlJobRequestBody(name="bad-pair", queue_name="q", sql_body="select 1",
                                              run_mode="shared_cluster", job_type="flink_opensource_sql_job"))),
        400, "DLI.0001")
    client.delete_flink_job(dli.DeleteFlinkJobRequest(job_id=v2.job.job_id))
    client.delete_flink_job(dli.DeleteFlinkJobRequest(job_id=bare.job.job_id))

    step("DLI trigger a savepoint on the running job")
    # savepoint_path is required by the SDK model (set unconditionally in the body's __init__,
    # no omitempty in the Go SDK); a trigger without it is refused.
    expect_error(lambda: client.execute_flink_job_savepoint(dli.ExecuteFlinkJobSavepointRequest(
        job_id=sql_id, body=dli.ExecuteFlinkJobSavepointRequestBody(action="TRIGGER"))), 400, "DLI.0001")
    triggered = client.execute_flink_job_savepoint(dli.ExecuteFlinkJobSavepointRequest(
        job_id=sql_id, body=dli.ExecuteFlinkJobSavepointRequestBody(
            action="TRIGGER", savepoint_path="dli-gitops-savepoints/conformance/triggered/")))
    check(triggered.is_success == "true", "trigger savepoint")
    wait_status(client, sql_id, "job_running")

    step("DLI stop with a savepoint")
    stopped = client.batch_stop_flink_jobs(dli.BatchStopFlinkJobsRequest(
        body=dli.StopFlinkJobsRequestBody(job_ids=[sql_id], trigger_savepoint=True)))
    check(stopped.body[0].is_success == "true", "stop answer")
    detail, seen = wait_status(client, sql_id, "job_cancel_success")
    check("job_savepointing" in seen or seen[0] in ("job_savepointing", "job_canceling"), f"stop statuses {seen}")
    savepoint_path = detail.savepoint_path
    check(savepoint_path and savepoint_path.startswith(f"obs://dli-gitops-savepoints/jobs/savepoint/{sql_id}/"),
          f"savepoint path: {savepoint_path}")
    metadata_key = savepoint_path[len("obs://dli-gitops-savepoints/"):] + "_metadata"
    got = obs_client.getObject("dli-gitops-savepoints", metadata_key, loadStreamInMemory=True)
    check(got.status == 200 and json.loads(got.body.buffer)["job_id"] == sql_id, "savepoint _metadata is a real object")

    step("DLI export to OBS")
    exported = client.export_flink_jobs(dli.ExportFlinkJobsRequest(body=dli.ExportFlinkJobsRequestBody(
        obs_dir="dli-gitops-backups/conformance", is_selected=True, job_selected=[sql_id])))
    check(exported.is_success == "true" and len(exported.zip_file) == 1, f"export: {exported}")
    zip_path = exported.zip_file[0]
    check(zip_path.startswith("dli-gitops-backups/conformance/clickstream-agg_") and zip_path.endswith(".zip"),
          f"zip name {zip_path}")

    step("OBS download the export and upload it to staging")
    key = zip_path.split("/", 1)[1]
    downloaded = obs_client.getObject("dli-gitops-backups", key, loadStreamInMemory=True)
    check(downloaded.status == 200, f"getObject: {downloaded.status} {downloaded.errorMessage}")
    genuine = downloaded.body.buffer
    zipfile.ZipFile(io.BytesIO(genuine)).namelist()  # a readable zip; its inside is DLI's business
    uploaded = obs_client.putObject("dli-gitops-staging", "conformance/clickstream-agg.zip", content=genuine)
    check(uploaded.status == 200, f"putObject: {uploaded.status} {uploaded.errorMessage}")
    exported_cu = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=sql_id)).job_detail.job_config.cu_number

    step("DLI import refuses a zip DLI did not export (an edited export)")
    archive = zipfile.ZipFile(io.BytesIO(genuine))
    check(any(b'"cu_number":' in archive.read(name) for name in archive.namelist() if name.endswith(".json")),
          "the export holds the job's cu_number to edit")
    changed = io.BytesIO()
    with zipfile.ZipFile(changed, "w") as out:
        for name in archive.namelist():
            data = archive.read(name)
            out.writestr(name, data.replace(b'"cu_number":', b'"cu_number": 1') if name.endswith(".json") else data)
    uploaded = obs_client.putObject("dli-gitops-staging", "conformance-edited/clickstream-agg.zip",
                                    content=changed.getvalue())
    check(uploaded.status == 200, f"putObject: {uploaded.status} {uploaded.errorMessage}")
    expect_error(lambda: client.import_flink_jobs(dli.ImportFlinkJobsRequest(body=dli.ImportFlinkJobsRequestBody(
        zip_file="dli-gitops-staging/conformance-edited/clickstream-agg.zip", is_cover=True))), 400, "DLI.0001")

    step("DLI import without is_cover reports the clash")
    imported = client.import_flink_jobs(dli.ImportFlinkJobsRequest(body=dli.ImportFlinkJobsRequestBody(
        zip_file="dli-gitops-staging/conformance/clickstream-agg.zip", is_cover=False)))
    check(imported.job_mapping[0].new_job_id == -1, f"clash mapping: {imported.job_mapping}")

    step("DLI import with is_cover overwrites by name, in draft")
    imported = client.import_flink_jobs(dli.ImportFlinkJobsRequest(body=dli.ImportFlinkJobsRequestBody(
        zip_file="dli-gitops-staging/conformance", is_cover=True)))
    check(imported.is_success == "true", "import is_success")
    mapping = imported.job_mapping[0]
    check(mapping.old_job_id == sql_id and mapping.new_job_id > 0, f"mapping: {mapping}")
    new_id = mapping.new_job_id
    detail = client.show_flink_job(dli.ShowFlinkJobRequest(job_id=new_id)).job_detail
    check(detail.status == "job_init" and detail.job_config.cu_number == exported_cu,
          "import applied the exported definition, job in draft")

    step("DLI import-savepoint, then run resuming from it")
    expect_error(lambda: client.import_flink_job_savepoint(dli.ImportFlinkJobSavepointRequest(
        job_id=new_id, body=dli.ImportFlinkJobSavepointRequestBody(
            job_id=new_id, savepoint_path="obs://dli-gitops-savepoints/nowhere/"))), 400, "DLI.0001")
    answer = client.import_flink_job_savepoint(dli.ImportFlinkJobSavepointRequest(
        job_id=new_id, body=dli.ImportFlinkJobSavepointRequestBody(job_id=new_id, savepoint_path=savepoint_path)))
    check(answer.is_success == "true", "import savepoint")
    client.batch_run_flink_jobs(dli.BatchRunFlinkJobsRequest(
        body=dli.BatchRunFlinkJobsRequestBody(job_ids=[new_id], resume_savepoint=True)))
    wait_status(client, new_id, "job_running")
    expect_error(lambda: client.import_flink_job_savepoint(dli.ImportFlinkJobSavepointRequest(
        job_id=new_id, body=dli.ImportFlinkJobSavepointRequestBody(job_id=new_id, savepoint_path=savepoint_path))),
        400, "DLI.0001")
    with urllib.request.urlopen(f"{endpoints['dli']}/_emulator/v1/{DEV_PROJECT}/jobs/{new_id}/runs") as response:
        runs = json.load(response)["runs"]
    check(runs[-1]["resume_savepoint"] and runs[-1]["restored_from"] == savepoint_path,
          f"the run restored the imported savepoint: {runs[-1]}")

    step("Security: a wrong secret key is refused, projects are isolated")
    wrong = dli_client(endpoints["dli"], sk="not-the-secret")
    expect_error(lambda: wrong.list_flink_jobs(dli.ListFlinkJobsRequest()), 401, "APIG.0301")
    other = dli_client(endpoints["dli"], OTHER_AK, OTHER_SK, OTHER_PROJECT)
    check(other.list_flink_jobs(dli.ListFlinkJobsRequest()).job_list.total_count == 0, "other project sees no jobs")
    expect_error(lambda: other.show_flink_job(dli.ShowFlinkJobRequest(job_id=new_id)), 400, "DLI.16001")

    step("DLI delete one and batch delete")
    deleted = client.delete_flink_job(dli.DeleteFlinkJobRequest(job_id=jar_id))
    check(deleted.is_success == "true", "delete one")
    batch = client.batch_delete_flink_jobs(dli.BatchDeleteFlinkJobsRequest(
        body=dli.BatchDeleteFlinkJobsRequestBody(job_ids=[new_id])))
    check(batch.body[0].is_success == "true", f"batch delete: {batch.body}")
    check(client.list_flink_jobs(dli.ListFlinkJobsRequest()).job_list.total_count == 0, "all deleted")
    expect_error(lambda: client.delete_flink_job(dli.DeleteFlinkJobRequest(job_id=jar_id)), 400, "DLI.16001")


def dlf_zip():
    job = {
        "name": "nightly-load", "processType": "BATCH", "directory": "/",
        "params": [{"name": "env", "value": "dev"}, {"name": "day", "value": "today"}],
        "nodes": [{"name": "load", "type": "DWSSQL",
                   "properties": [{"name": "scriptName", "value": "load_sql"},
                                  {"name": "connectionName", "value": "dev_dws"}]}],
        "schedule": {"type": "EXECUTE_ONCE"},
    }
    script = {"name": "load_sql", "type": "DWSSQL", "content": "select 1", "connectionName": "dev_dws"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("jobs/nightly-load.job", json.dumps(job))
        archive.writestr("scripts/load_sql.script", json.dumps(script))
    return buffer.getvalue()


def wait_task(client, task_id, timeout=15):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        task = client.list_system_tasks(dlf.ListSystemTasksRequest(task_id=task_id))
        if not seen or seen[-1] != task.status:
            seen.append(task.status)
        if task.status in ("SUCCESSFUL", "FAILED"):
            return task, seen
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never finished; saw {seen}")


def dlf_steps(endpoints, obs_client):
    client = dlf_client(endpoints["dlf"])

    step("OBS upload a DLF job bundle")
    uploaded = obs_client.putObject("dli-gitops-staging", "dlf/nightly-load.zip", content=dlf_zip())
    check(uploaded.status == 200, f"putObject: {uploaded.status} {uploaded.errorMessage}")

    step("DLF import with params and jobsParam, poll the system task")
    answer = client.import_job(dlf.ImportJobRequest(body=dlf.ImportFileReq(
        path="obs://dli-gitops-staging/dlf/nightly-load.zip", params={"env": "prod"},
        same_name_policy="OVERWRITE", jobs_param=[{"name": "nightly-load", "params": {"day": "yesterday"}}])))
    check(answer.task_id, "import returns a taskId")
    task, seen = wait_task(client, answer.task_id)
    check(seen[0] == "RUNNING" and task.status == "SUCCESSFUL", f"task statuses {seen}: {task.message}")

    step("DLF list and show the imported job")
    listed = client.list_jobs(dlf.ListJobsRequest())
    check(listed.total == 1 and listed.jobs[0].name == "nightly-load", f"list: {listed}")
    shown = client.show_job(dlf.ShowJobRequest(job_name="nightly-load"))
    params = {param.name: param.value for param in shown.params}
    check(params == {"env": "prod", "day": "yesterday"}, f"replacements applied: {params}")
    check(shown.nodes[0].name == "load", "nodes kept")

    step("DLF errors: unreadable OBS file, missing job, missing task")
    expect_error(lambda: client.import_job(dlf.ImportJobRequest(body=dlf.ImportFileReq(
        path="obs://dli-gitops-staging/dlf/missing.zip"))), 400, "DLF.0815")
    expect_error(lambda: client.show_job(dlf.ShowJobRequest(job_name="no-such-job")), 400, "DLF.0100")
    expect_error(lambda: client.list_system_tasks(dlf.ListSystemTasksRequest(task_id="0" * 32)), 400, "DLF.0810")

    step("DLF export the job (zip in the documented layout)")
    exported = client.export_job(dlf.ExportJobRequest(job_name="nightly-load"))
    check(exported.status_code == 200 and exported.raw_content, "export answers a zip")
    archive = zipfile.ZipFile(io.BytesIO(exported.raw_content))
    check(sorted(archive.namelist()) == ["jobs/nightly-load.job", "scripts/load_sql.script"],
          f"export layout: {archive.namelist()}")
    check(json.loads(archive.read("jobs/nightly-load.job"))["name"] == "nightly-load", "job document")
    batch = client.export_job_list(dlf.ExportJobListRequest(body=dlf.ExportJobsReq(job_list=["nightly-load"])))
    archive = zipfile.ZipFile(io.BytesIO(batch.raw_content))
    check("jobs/nightly-load/nightly-load.job" in archive.namelist(), f"batch layout: {archive.namelist()}")

    step("DLF start and stop the job's schedule; a scheduled job is not deleted; delete it stopped")
    client.start_job(dlf.StartJobRequest(job_name="nightly-load"))
    expect_error(lambda: client.delete_job(dlf.DeleteJobRequest(job_name="nightly-load")), 400, "DLF.3051")
    client.stop_job(dlf.StopJobRequest(job_name="nightly-load"))
    client.delete_job(dlf.DeleteJobRequest(job_name="nightly-load"))
    expect_error(lambda: client.show_job(dlf.ShowJobRequest(job_name="nightly-load")), 400, "DLF.0100")


def obs_steps(endpoints):
    step("OBS a wrong secret key is refused")
    wrong = ObsClient(access_key_id=DEV_AK, secret_access_key="wrong", server=endpoints["s3"],
                      signature="v2", path_style=True)
    answer = wrong.getObject("dli-gitops-staging", "dlf/nightly-load.zip", loadStreamInMemory=True)
    check(answer.status == 403, f"wrong secret: {answer.status}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "debug", "dli-gitops")
    with tempfile.TemporaryDirectory() as data_dir:
        config_path = os.path.join(data_dir, "emulator.yaml")
        with open(config_path, "w") as config_file:
            config_file.write(CONFIG)
        process = subprocess.Popen(
            [binary, "emulator", "--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0",
             "--data", os.path.join(data_dir, "data"), "--config", config_path],
            stdout=subprocess.PIPE, text=True)
        try:
            line = process.stdout.readline()
            check(line, "the emulator printed its endpoints")
            endpoints = json.loads(line)
            check(set(endpoints) == {"dli", "dlf", "iam", "s3"}, f"endpoint line: {line}")
            obs_client = ObsClient(access_key_id=DEV_AK, secret_access_key=DEV_SK, server=endpoints["s3"],
                                   signature="v2", path_style=True)
            dli_steps(endpoints, obs_client)
            dlf_steps(endpoints, obs_client)
            obs_steps(endpoints)
            obs_client.close()
        finally:
            process.terminate()
            code = process.wait(timeout=20)
        check(code == 0, f"the emulator exits 0 on SIGTERM, got {code}")
    print(f"SDK conformance: {len(STEPS)} steps passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # any failure, assertion or SDK error, fails the run
        print(f"SDK conformance FAILED at step {STEPS[-1] if STEPS else '(start)'}: {error!r}", file=sys.stderr)
        sys.exit(1)
