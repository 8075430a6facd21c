"""When ``jax.distributed`` starts: the ``distributed.*`` keys and cluster detection
(``jax.distributed.initialize`` itself replaced by a recorder: nothing connects)."""

import jax
import pytest

from jaxconv.train import parallel

SLURM_TWO = {
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "localhost",
    "SLURM_NTASKS": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}


@pytest.fixture
def calls(monkeypatch):
    recorded = []
    for name in (*SLURM_TWO, "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: recorded.append(kw))
    return recorded


def test_nothing_starts_without_keys_or_a_cluster(calls):
    assert parallel.initialize() is False and calls == []


def test_a_slurm_job_of_several_tasks_starts_it_with_no_arguments(calls, monkeypatch):
    for name, value in SLURM_TWO.items():
        monkeypatch.setenv(name, value)
    assert parallel.detected_cluster() == "slurm"
    parallel.initialize(timeout_seconds=42)
    assert calls == [
        {
            "coordinator_address": None,
            "num_processes": None,
            "process_id": None,
            "initialization_timeout": 42,
            "heartbeat_timeout_seconds": 42,
        }
    ]


def test_one_slurm_task_or_initialize_false_leaves_it_off(calls, monkeypatch):
    for name, value in {**SLURM_TWO, "SLURM_NTASKS": "1"}.items():
        monkeypatch.setenv(name, value)
    assert parallel.detected_cluster() is None
    parallel.initialize()
    monkeypatch.setenv("SLURM_NTASKS", "2")
    parallel.initialize(initialize=False)
    assert calls == []


def test_explicit_keys_are_passed_on(calls):
    parallel.initialize(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3)
    assert calls[0]["coordinator_address"] == "10.0.0.1:1234"
    assert (calls[0]["num_processes"], calls[0]["process_id"]) == (4, 3)


def test_initialize_true_asks_jax_to_detect(calls):
    parallel.initialize(initialize=True)
    assert calls[0]["coordinator_address"] is None


def test_a_coordinator_that_never_answers_is_one_line(monkeypatch):
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)

    def unreachable(**kwargs):
        raise RuntimeError("DEADLINE_EXCEEDED: Barrier timed out\nmore detail")

    monkeypatch.setattr(jax.distributed, "initialize", unreachable)
    with pytest.raises(parallel.DistributedError) as err:
        parallel.initialize(coordinator_address="10.0.0.1:1234", timeout_seconds=5)
    assert str(err.value) == (
        "jax.distributed could not connect via 10.0.0.1:1234 within 5 s "
        "(distributed.timeout_seconds): DEADLINE_EXCEEDED: Barrier timed out"
    )
