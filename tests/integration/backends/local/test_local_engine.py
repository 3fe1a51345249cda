"""Hybrid jobs as real local processes on the embedded engine, outside Prefect flows."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import examples
from helpers.waiting import job_count, job_processes_left, pid_alive, wait_for
from prefect_braket import (
    HybridJob,
    JobFailedError,
    JobSpec,
    StoppingCondition,
    hybrid_job,
)
from prefect_braket.jobs import (
    get_checkpoint_dir,
    get_hyperparameters,
    get_job_device_arn,
    get_job_name,
    load_job_checkpoint,
    log_metric,
    save_job_checkpoint,
)

QPU = "arn:aws:braket:us-east-1::device/qpu/ionq/Forte-1"


train = hybrid_job(device="local:braket/braket_sv")(examples.train)


def test_example_runs_and_returns_like_braket(engine):
    job = train(num_tasks=5)
    assert job.state() in ("QUEUED", "RUNNING", "COMPLETED")
    assert job.result() == {"final_theta": pytest.approx(0.5)}
    assert job.state() == "COMPLETED"
    metrics = job.metrics()
    assert metrics["theta"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert metrics["iteration_number"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(metrics["timestamp"]) == 5
    meta = job.metadata()
    assert meta["hyperParameters"] == {"num_tasks": "5", "lr": "0.1"}
    assert [e["eventType"] for e in meta["events"]] == [
        "QUEUED_FOR_EXECUTION", "STARTING_INSTANCE", "RUNNING", "UPLOADING_RESULTS", "COMPLETED"]
    assert meta["startedAt"] <= meta["endedAt"]
    assert job.name.startswith("train-")
    # The checkpoint sits in the job's checkpoint directory, in Braket's layout.
    checkpoint = engine.job_directory(job.arn) / "checkpoints" / f"{job.name}.json"
    assert json.loads(checkpoint.read_text())["dataDictionary"] == {"theta": pytest.approx(0.5), "i": 4}
    assert (engine.job_directory(job.arn) / "data" / "output" / "model.tar.gz").exists()


@hybrid_job(device="local:braket/braket_dm")
def environment_report(marker: str = "x"):
    with open("relative.txt", "w") as f:
        f.write(marker)
    return {
        "name": get_job_name(),
        "device": get_job_device_arn(),
        "token": os.environ.get("AMZN_BRAKET_JOB_TOKEN"),
        "hyperparameters": get_hyperparameters(),
        "checkpoints": get_checkpoint_dir(),
        "cwd": os.getcwd(),
        "results_dir": os.environ["AMZN_BRAKET_JOB_RESULTS_DIR"],
    }


def test_job_sees_braket_container_contract_and_keeps_relative_files(engine, tmp_path):
    job = environment_report(marker="hello")
    result = job.result()
    assert result["name"] == job.name
    assert result["device"] == "local:braket/braket_dm"
    assert result["token"] == engine.job_token(job.arn) and len(result["token"]) >= 32
    assert result["hyperparameters"] == {"marker": "hello"}
    assert result["cwd"] == result["results_dir"]
    assert result["checkpoints"] == str(engine.job_directory(job.arn) / "checkpoints")
    downloaded = job.download_result(tmp_path / "downloads")
    assert downloaded == tmp_path / "downloads" / job.name
    assert (downloaded / "relative.txt").read_text() == "hello"
    assert json.loads((downloaded / "results.json").read_text())["dataFormat"] == "plaintext"


@hybrid_job(device="local:braket/braket_sv")
def fails(message: str):
    print("about to fail")
    raise ValueError(message)


def test_failed_job_reports_exception_and_keeps_log(engine):
    job = fails("the optimizer diverged")
    with pytest.raises(JobFailedError) as caught:
        job.result()
    assert job.state() == "FAILED"
    assert job.metadata()["failureReason"] == "AlgorithmError: ValueError: the optimizer diverged"
    assert caught.value.failure_reason == "AlgorithmError: ValueError: the optimizer diverged"
    assert "about to fail" in caught.value.log_tail
    assert any("Traceback" in line for line in caught.value.log_tail)
    assert "about to fail" in job.logs()


@hybrid_job(device="local:braket/braket_sv")
def sleeper(seconds: float = 60.0):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open("child.pid", "w") as f:
        f.write(str(child.pid))
    save_job_checkpoint({"child": child.pid})
    time.sleep(seconds)


def _child_pid(engine, job):
    checkpoint = engine.job_directory(job.arn) / "checkpoints" / f"{job.name}.json"
    wait_for(checkpoint.exists)
    return json.loads(checkpoint.read_text())["dataDictionary"]["child"]


def test_cancel_ends_every_process_of_the_job(engine):
    job = sleeper()
    child = _child_pid(engine, job)
    pids = engine.process_ids(job.arn)
    assert job.state() == "RUNNING"
    assert job.cancel() == "CANCELLING"
    meta = job.wait_until_complete(timeout_seconds=15, poll_interval_seconds=0.1)
    assert meta["status"] == "CANCELLED"
    assert [e["eventType"] for e in meta["events"]][-1] == "CANCELLED"
    for pid in (child, pids["process_group"], pids["supervisor"]):
        wait_for(lambda pid=pid: not pid_alive(pid), timeout=5)
    with pytest.raises(JobFailedError, match="CANCELLED"):
        job.result()
    assert job.cancel() == "CANCELLED"  # cancelling an ended job is harmless


@hybrid_job(device="local:braket/braket_sv", stopping_condition=StoppingCondition(maxRuntimeInSeconds=1))
def overrun():
    time.sleep(30)


def test_maximum_runtime_is_enforced(engine):
    job = overrun()
    meta = job.wait_until_complete(timeout_seconds=15, poll_interval_seconds=0.1)
    assert meta["status"] == "FAILED"
    assert "maximum runtime of 1 seconds" in meta["failureReason"]
    assert "MAX_RUNTIME_EXCEEDED" in [e["eventType"] for e in meta["events"]]


@hybrid_job(device="local:braket/braket_sv")
def resumable(iterations: int = 6, start_from: str = ""):
    state = {"i": 0, "total": 0}
    if start_from:
        state = load_job_checkpoint(job_name=start_from)
    for i in range(state["i"], iterations):
        state = {"i": i + 1, "total": state["total"] + i}
        save_job_checkpoint(state)
        log_metric(metric_name="total", value=state["total"], iteration_number=i)
        time.sleep(0.3)
    return state


def test_killed_job_is_resumed_from_its_checkpoint_by_a_new_job(engine):
    first = resumable()
    wait_for(lambda: len(first.metrics().get("total", [])) >= 2)
    os.killpg(engine.process_ids(first.arn)["process_group"], signal.SIGKILL)
    meta = first.wait_until_complete(timeout_seconds=10, poll_interval_seconds=0.1)
    assert meta["status"] == "FAILED"
    assert "signal 9" in meta["failureReason"]
    done = len(first.metrics()["total"])
    assert 2 <= done < 6

    second = hybrid_job(device="local:braket/braket_sv", copy_checkpoints_from_job=first.arn)(resumable.__wrapped__)(
        start_from=first.name
    )
    assert second.result() == {"i": 6, "total": 15}
    resumed_iterations = second.metrics()["iteration_number"]
    assert resumed_iterations[0] >= done - 1  # it started from the checkpoint, not from 0
    assert len(resumed_iterations) <= 6 - done + 1


SUBMITTER = textwrap.dedent(
    """
    import os, sys, time
    from prefect_braket import hybrid_job

    @hybrid_job(device="local:braket/braket_sv")
    def slow_square(x: int):
        time.sleep(1.5)
        return {"square": x * x}

    job = slow_square(7)
    print(job.arn, flush=True)
    # The submitter dies with its whole process group, as a closed terminal or Ctrl-C takes a
    # foreground command and everything it started in its group; the job must not.
    os.killpg(0, 9)
    """
)


def test_reattach_after_the_submitting_process_dies(engine, tmp_path):
    script = tmp_path / "submitter.py"
    script.write_text(SUBMITTER)
    # A session of its own, so that killing its process group kills nothing of the tests.
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                               start_new_session=True)
    assert completed.returncode == -9, completed.stderr
    arn = completed.stdout.strip()
    job = HybridJob.attach(arn)
    assert job.state() in ("QUEUED", "RUNNING")
    assert job.result(poll_interval_seconds=0.2) == {"square": 49}
    # The job itself ran on: it was not lost with the submitter and replaced from its checkpoints.
    assert job.replaced == [] and job.arn == arn and HybridJob.attach(arn).state() == "COMPLETED"


def test_unknown_arn_is_a_clear_error():
    from prefect_braket import JobNotFoundError

    with pytest.raises(JobNotFoundError, match="No job local:job/nope"):
        HybridJob.attach("local:job/nope")


@hybrid_job(device=QPU, backend="local")
def holds_device(seconds: float = 1.0):
    time.sleep(seconds)
    return {"device": get_job_device_arn()}


@hybrid_job(device="local:braket/braket_sv")
def simulator_sleep(seconds: float = 1.0):
    time.sleep(seconds)
    return {"ok": True}


def test_one_running_job_per_qpu_and_simulators_in_parallel(engine):
    first, second = holds_device(1.5), holds_device(0.1)
    wait_for(lambda: first.state() == "RUNNING")
    assert second.state() == "QUEUED"
    assert second.queue_position().queue_position == "1"
    assert "WAITING_FOR_PRIORITY" in [e["eventType"] for e in second.metadata()["events"]]
    assert first.queue_position().queue_position is None
    assert second.result() == {"device": QPU}
    ended = first.metadata()["endedAt"]
    assert ended <= second.metadata()["startedAt"]
    # The engine gives every QPU job WAITING_FOR_PRIORITY when it is created: what says it waited is
    # that the event came while the job ahead ran, and its RUNNING only after that job ended.
    events = {e["eventType"]: e["timeOfEvent"] for e in second.metadata()["events"]}
    order = [e["eventType"] for e in second.metadata()["events"]]
    assert order.index("WAITING_FOR_PRIORITY") < order.index("RUNNING")
    assert events["WAITING_FOR_PRIORITY"] < ended <= events["RUNNING"]

    a, b = simulator_sleep(1.0), simulator_sleep(1.0)
    wait_for(lambda: a.state() == "RUNNING" and b.state() == "RUNNING", timeout=5)
    a.result(), b.result()


def test_entry_point_job_binds_typed_hyperparameters_and_input_data(engine, tmp_path):
    source = tmp_path / "algorithm"
    source.mkdir()
    (source / "train.py").write_text(textwrap.dedent(
        """
        from pathlib import Path
        from prefect_braket.jobs import get_input_data_dir, save_job_result

        def main(steps: int, rate: float, name: str = "x"):
            data = (Path(get_input_data_dir("dataset")) / "values.txt").read_text()
            save_job_result({"steps": steps * 2, "rate": rate + 1, "name": name, "data": data})
        """
    ))
    (tmp_path / "values.txt").write_text("1,2,3")
    spec = JobSpec(job_name="entry-point-job", device="local:braket/braket_sv", source_module=source,
                   entry_point="algorithm.train:main", hyperparameters={"steps": "3", "rate": "0.5"},
                   input_data={"dataset": str(tmp_path / "values.txt")})
    job = HybridJob(engine.create_job(spec), engine)
    assert job.result() == {"steps": 6, "rate": 1.5, "name": "x", "data": "1,2,3"}


def test_relative_input_paths_work_inside_decorated_function(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "numbers.txt").write_text("4 5")

    @hybrid_job(device="local:braket/braket_sv", input_data={"numbers": "data/numbers.txt"})
    def reads_relative():
        with open("data/numbers.txt") as f:
            return {"sum": sum(int(x) for x in f.read().split())}

    assert reads_relative().result() == {"sum": 9}


# -- bad input -------------------------------------------------------------------------------------


def test_invalid_job_name_names_the_rule_and_a_fix():
    with pytest.raises(ValueError, match=r"Invalid job name 'my_job'.*Try 'my-job'"):
        hybrid_job(device="local:braket/braket_sv", job_name="my_job")
    with pytest.raises(ValueError, match="Invalid job name"):
        JobSpec(job_name="-x", device="local:braket/braket_sv", source_module=__file__, entry_point="a")


def test_unpicklable_function_is_refused_before_submission(engine):
    import threading

    lock = threading.Lock()

    @hybrid_job(device="local:braket/braket_sv")
    def uses_lock():
        with lock:
            return 1

    with pytest.raises(RuntimeError, match="Serialization failed for hybrid job uses_lock.*inside the function"):
        uses_lock()
    assert job_count(engine) == 0


@hybrid_job(device="local:braket/braket_sv")
def returns_unserializable():
    return {"value": {1, 2}}


@hybrid_job(device="local:braket/braket_sv", data_format="pickle")
def returns_pickled():
    return {"value": {1, 2}}


@hybrid_job(device="local:braket/braket_sv", data_format="pickle")
def returns_unpicklable():
    import threading

    return {"lock": threading.Lock()}


def test_result_formats_and_their_errors(engine):
    plain, pickled, unpicklable = returns_unserializable(), returns_pickled(), returns_unpicklable()
    with pytest.raises(JobFailedError, match="'value' has type set.*data_format='pickle'"):
        plain.result()
    with pytest.raises(RuntimeError, match="allow_pickle=True"):
        pickled.result()
    assert pickled.result(allow_pickle=True) == {"value": {1, 2}}
    with pytest.raises(JobFailedError, match="TypeError: cannot pickle '_thread.lock'"):
        unpicklable.result()


def test_overlong_hyperparameters(engine):
    @hybrid_job(device="local:braket/braket_sv")
    def takes_text(text: str):
        return len(text)

    job = takes_text("a" * 3000)  # captured arguments are shortened as Braket does
    shown = job.metadata()["hyperParameters"]["text"]
    assert len(shown) == 2500 and shown.startswith("aaa") and "..." in shown
    assert job.result() == {"result": 3000}
    with pytest.raises(ValueError, match="'big' is 2501 characters long; Braket takes at most 2500"):
        JobSpec(job_name="x", device="local:braket/braket_sv", source_module=__file__,
                entry_point="test_local_engine", hyperparameters={"big": "b" * 2501})


def test_missing_entry_point_is_refused(tmp_path):
    (tmp_path / "algo").mkdir()
    (tmp_path / "algo" / "train.py").write_text("def main(): pass\n")
    with pytest.raises(ValueError, match="Entry point module 'train' is not in the source.*starts with 'algo'"):
        JobSpec(job_name="x", device="local:braket/braket_sv", source_module=tmp_path / "algo",
                entry_point="train:main")


def test_missing_entry_function_fails_the_job_clearly(engine, tmp_path):
    (tmp_path / "algo.py").write_text("def main(): pass\n")
    spec = JobSpec(job_name="no-function", device="local:braket/braket_sv", source_module=tmp_path / "algo.py",
                   entry_point="algo:mian")
    job = HybridJob(engine.create_job(spec), engine)
    with pytest.raises(JobFailedError, match="Setting up the job failed: AttributeError.*'mian'"):
        job.result()


def test_missing_dependencies_are_named(engine):
    named = r"numpy>=999 \(installed: [0-9.]+\); surely-not-installed-pkg \(not installed\)"
    with pytest.raises(ModuleNotFoundError, match=named):
        hybrid_job(device="local:braket/braket_sv", dependencies=["numpy>=999", "surely-not-installed-pkg"])(
            lambda: 1
        )()
    assert job_count(engine) == 0
    ok = hybrid_job(device="local:braket/braket_sv", dependencies=["numpy>=1"])(lambda: 2)()
    assert ok.result() == {"result": 2}


def test_include_modules_ship_helper_code_by_value(engine):
    from helpers import scaling

    @hybrid_job(device="local:braket/braket_sv", include_modules="helpers.scaling")
    def uses_helper(x: int):
        return scaling.scale(x)

    job = uses_helper(5)
    # The job process cannot import the tests' helpers package: the code went in the pickle.
    assert job.result() == {"result": 15}
    import cloudpickle

    assert "helpers.scaling" not in cloudpickle.list_registry_pickle_by_value()
    without = hybrid_job(device="local:braket/braket_sv")(uses_helper.__wrapped__)(5)
    with pytest.raises(JobFailedError, match="No module named 'helpers'"):
        without.result()


def test_script_entry_points_future_annotations_and_clean_exits(engine, tmp_path):
    (tmp_path / "algo.py").write_text(
        "from __future__ import annotations\n"
        "import sys\n"
        "from prefect_braket.jobs import save_job_result\n"
        "def main(steps: int, rate: float):\n"
        "    save_job_result({'total': sum(range(steps)) * rate})\n"
        "if __name__ == '__main__':\n"
        "    save_job_result({'script': True})\n"
        "    sys.exit(0)\n"
    )
    typed = JobSpec(job_name="typed", device="local:braket/braket_sv", source_module=tmp_path / "algo.py",
                    entry_point="algo:main", hyperparameters={"steps": "4", "rate": "0.5"})
    assert HybridJob(engine.create_job(typed), engine).result() == {"total": 3.0}
    script = JobSpec(job_name="script", device="local:braket/braket_sv", source_module=tmp_path / "algo.py",
                     entry_point="algo")
    assert HybridJob(engine.create_job(script), engine).result() == {"script": True}  # sys.exit(0) is success


def test_result_of_a_running_job_says_to_wait(engine):
    job = sleeper(30)
    wait_for(lambda: job.state() == "RUNNING")
    with pytest.raises(RuntimeError, match="is RUNNING, not finished: wait for it first"):
        job.fetch_result()
    job.cancel()


def test_local_flag_keeps_an_aws_device_block_on_the_engine(engine):
    from prefect_braket import BraketDevice

    forte = BraketDevice(device_arn=QPU)
    job = hybrid_job(device=forte, local=True)(lambda: get_job_device_arn())()
    assert job.arn.startswith("local:job/")
    assert job.result() == {"result": QPU}


def test_empty_hyperparameters_are_refused_or_left_out():
    with pytest.raises(ValueError, match="Hyperparameter 'name' is empty"):
        JobSpec(job_name="x", device="local:braket/braket_sv", source_module=__file__,
                entry_point="test_local_engine", hyperparameters={"name": ""})
    from prefect_braket.core.spec import hyperparameters_from_call

    assert hyperparameters_from_call(lambda a, b="": a, (1,), {}) == {"a": "1"}


@hybrid_job(device="local:braket/braket_sv")
def resumable_count(steps: int = 6, pause: float = 0.3):
    try:
        state = load_job_checkpoint()
    except FileNotFoundError:
        state = {"done": [], "runs": 0}
    state["runs"] += 1
    for i in range(len(state["done"]), steps):
        state["done"].append(i)
        save_job_checkpoint(state)
        log_metric(metric_name="step", value=i, iteration_number=i)
        time.sleep(pause)
    return state


def test_a_lost_instance_is_resubmitted_from_its_checkpoints(engine):
    from prefect_braket.backends.base import REPLACES_TAG, is_instance_failure

    job = resumable_count()
    first = job.arn
    wait_for(lambda: len(job.metrics().get("step", [])) >= 2, timeout=60)
    engine.kill_instance(first)
    lost = HybridJob.attach(first).metadata()
    assert lost["status"] == "FAILED" and is_instance_failure(lost["failureReason"])
    leader = engine.process_ids(first)["process_group"]
    assert leader and wait_for(lambda: not pid_alive(leader), timeout=10)

    result = job.result(poll_interval_seconds=0.2)
    # The replacement started from the lost job's last checkpoint, renamed for it, and finished.
    assert result["done"] == list(range(6)) and result["runs"] == 2
    assert job.replaced == [first] and job.arn != first and job.name == f"{lost['jobName']}-r1"
    assert job.metadata()["tags"][REPLACES_TAG] == first
    steps = job.metrics("iteration_number")["step"]
    assert steps[0] >= 2 and steps[-1] == 5  # resumed, not restarted
    # Idempotent: resubmitting the same lost job again (a retried wait) finds the same replacement.
    again = HybridJob(first)
    assert again.replace_if_lost() == job.arn
    assert job_count(engine) == 2


def test_a_job_that_failed_in_its_code_is_not_resubmitted(engine):
    @hybrid_job(device="local:braket/braket_sv")
    def broken():
        class InternalServerError(Exception):  # named like an infrastructure fault, raised by the code
            pass

        raise InternalServerError("bad input")

    job = broken()
    with pytest.raises(JobFailedError, match="AlgorithmError: InternalServerError: bad input"):
        job.result(poll_interval_seconds=0.2)
    assert job.replaced == [] and job_count(engine) == 1


def test_an_instance_killed_as_it_starts_leaves_no_process_behind(engine):
    job = resumable_count(steps=100, pause=0.05)
    wait_for(lambda: job.state() == "RUNNING", timeout=60)  # the supervisor may not have recorded the process yet
    engine.kill_instance(job.arn)
    wait_for(lambda: not job_processes_left(engine, job.arn), timeout=15)  # nothing of the job runs on
    assert job.state() == "FAILED"
    assert not job_processes_left(engine, job.arn)  # and nothing started it again


def test_a_lost_supervisor_ends_its_job_as_a_lost_instance(engine):
    """The supervisor killed (the machine's engine gone): the job is settled FAILED as a lost instance,
    its own processes are ended, and waiting resubmits it from its checkpoint."""
    job = resumable_count(steps=8, pause=0.3)
    first = job.arn
    wait_for(lambda: len(job.metrics().get("step", [])) >= 2, timeout=60)
    pids = engine.process_ids(first)
    os.kill(pids["supervisor"], signal.SIGKILL)
    result = job.result(poll_interval_seconds=0.2)
    lost = HybridJob.attach(first).metadata()
    assert lost["failureReason"].startswith("InternalServerError: The job was lost: the engine process supervising it")
    assert wait_for(lambda: not pid_alive(pids["process_group"]), timeout=10)
    assert result["done"] == list(range(8)) and result["runs"] == 2 and job.replaced == [first]
