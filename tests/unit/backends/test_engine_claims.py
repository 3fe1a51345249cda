"""The engine's client-token claims (`LocalEngine.create_job`, `store.claimed_arn`): a retry with
the same token gets the job the first try created, never a second; a claim whose submission failed
or was abandoned no longer blocks. Creating the job itself (files, supervisor) is replaced by a
recording stand-in: tests/integration/backends/local/ runs real jobs."""

import hashlib
import os
import re
import threading
import time

import pytest

from prefect_braket.backends.local import store
from prefect_braket.backends.local.engine import LocalEngine
from prefect_braket.backends.local.store import ARN_PREFIX, SubmissionInProgress, index_file
from prefect_braket.core.errors import JobStateError


class Engine(LocalEngine):
    """Creates a job by writing its index only, and records each creation."""

    def __init__(self, root):
        super().__init__(root)
        self.created: list[str] = []
        self.calls: list[tuple] = []  # what each creation was given
        self.earlier = object()  # the job whose checkpoints a spec names, as _refuse_what_cannot_run finds it
        self.fail_next = False
        self.entered = threading.Event()
        self.proceed: threading.Event | None = None

    def _refuse_what_cannot_run(self, spec):
        return self.earlier

    def _create(self, spec, job_id, earlier, initial_checkpoints, environment):
        self.calls.append((spec, earlier, initial_checkpoints, environment))
        self.entered.set()
        if self.proceed is not None:
            assert self.proceed.wait(timeout=30)
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        arn = ARN_PREFIX + job_id
        index = index_file(self.root, arn)
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text("jobs/x")
        self.created.append(arn)
        return arn


def claim_file(engine, token):
    return engine.root / "tokens" / hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def claims(tmp_path):
    return Engine(tmp_path / "home")


@pytest.mark.parametrize("token", [None, "token-a"], ids=["without a token", "with a token"])
def test_what_the_caller_gives_reaches_the_job_it_creates(claims, tmp_path, token):
    spec, checkpoints = object(), tmp_path / "checkpoints"
    claims.create_job(spec, client_token=token, initial_checkpoints=checkpoints,
                      environment={"LEARNING_RATE": "0.1"})
    assert claims.calls == [(spec, claims.earlier, checkpoints, {"LEARNING_RATE": "0.1"})]


def test_the_same_token_gets_the_same_job_and_another_token_a_new_one(claims):
    first = claims.create_job(None, client_token="token-a")
    assert claims.create_job(None, client_token="token-a") == first
    second = claims.create_job(None, client_token="token-b")
    assert second != first and claims.created == [first, second]
    # The claim is named by the token's hash (the token is not kept in clear) and names the job.
    assert claim_file(claims, "token-a").read_text() == first
    assert not any("token-a" in p.name for p in (claims.root / "tokens").iterdir())


def test_without_a_token_every_call_creates_a_job(claims):
    arns = [claims.create_job(None), claims.create_job(None, client_token="")]
    assert len(set(arns)) == 2 and claims.created == arns
    assert not (claims.root / "tokens").exists() or not any((claims.root / "tokens").iterdir())


def test_a_failed_submission_withdraws_its_claim_so_a_retry_creates_the_job(claims):
    claims.fail_next = True
    with pytest.raises(OSError, match="disk full"):
        claims.create_job(None, client_token="token-a")
    assert not claim_file(claims, "token-a").exists()
    arn = claims.create_job(None, client_token="token-a")
    assert claims.created == [arn] and claim_file(claims, "token-a").read_text() == arn


def test_a_retry_during_the_first_submission_waits_for_its_job(claims, monkeypatch):
    claims.proceed = threading.Event()
    waiting = threading.Event()
    pause = store.time.sleep

    def poll_pause(seconds):  # the retry found the claim, and its job not yet there: it waits
        waiting.set()
        pause(seconds)

    monkeypatch.setattr(store.time, "sleep", poll_pause)
    answers: dict[str, str] = {}
    first = threading.Thread(target=lambda: answers.update(first=claims.create_job(None, client_token="token-a")))
    first.start()
    assert claims.entered.wait(timeout=30)  # the first holds the claim and is creating its job
    second = threading.Thread(target=lambda: answers.update(second=claims.create_job(None, client_token="token-a")))
    second.start()
    assert waiting.wait(timeout=30)
    claims.proceed.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert answers["first"] == answers["second"] and len(claims.created) == 1


def test_a_claim_still_being_created_past_the_grace_period_says_so(claims, monkeypatch):
    monkeypatch.setattr(store, "ORPHAN_GRACE_SECONDS", 0.2)
    claim = claim_file(claims, "token-a")
    claim.parent.mkdir(parents=True)
    claim.write_text(ARN_PREFIX + "0" * 32)  # claimed, its job not (yet) indexed, the claim fresh
    with pytest.raises(SubmissionInProgress, match=f"still creating {ARN_PREFIX}{'0' * 32}; try again"):
        claims.create_job(None, client_token="token-a")
    assert claims.created == [] and claim.exists()


@pytest.mark.parametrize("age, abandoned", [(3.6, True), (1.2, False)])
def test_a_claim_older_than_three_grace_periods_is_abandoned_and_replaced(claims, monkeypatch, age, abandoned):
    monkeypatch.setattr(store, "ORPHAN_GRACE_SECONDS", 1.0)
    claim = claim_file(claims, "token-a")
    claim.parent.mkdir(parents=True)
    claim.write_text(ARN_PREFIX + "0" * 32)
    old = time.time() - age
    os.utime(claim, (old, old))  # its submitter died without creating the job (or is slow)
    if abandoned:
        arn = claims.create_job(None, client_token="token-a")
        assert claims.created == [arn] and claim.read_text() == arn
    else:
        with pytest.raises(SubmissionInProgress):
            claims.create_job(None, client_token="token-a")
        assert claims.created == []


@pytest.mark.parametrize("held", ["not an arn", "local:job/../../elsewhere", "local:job/" + "0" * 31 + "g"])
def test_a_damaged_claim_is_an_error_that_says_how_to_fix_it(claims, held):
    claim = claim_file(claims, "token-a")
    claim.parent.mkdir(parents=True)
    claim.write_text(held)  # an ARN is local:job/ and a 32-digit hex id, or the claim is not to be followed
    with pytest.raises(JobStateError, match=rf"{re.escape(repr(held))}, not a job ARN.*Remove it"):
        claims.create_job(None, client_token="token-a")
    assert claims.created == []
