"""Variational algorithms as flows: every iteration a cached, retried task run, checkpointed and shown.

`run_variational` minimises a cost, either a parametric program with a weighted Pauli
observable (`ParametricCost`) or a Python function of a device and parameters, with SPSA,
gradient descent on parameter-shift gradients, or a SciPy minimiser. Inside a flow:

- each iteration is one task run (all its circuits in one batch), retried on transient errors
  and cached on the experiment id, the iteration and its points, so a retried or re-run flow
  gets finished iterations back without evaluating (or paying for) them again;
- each iteration writes a Braket-format checkpoint (`PersistedJobData`, locally or in S3 through
  fsspec) from which a new run with the same experiment id resumes;
- a progress artifact (updated in place, its description the latest energy) and a log line
  follow the iterations (at most every 2 seconds); a table artifact of every row and a summary
  with a convergence plot close the run, one card each in the run's Artifacts tab;
- checkpoints and artifacts go out in order from a thread of their own, so the loop does not wait
  for them; the run returns once they are all out, and fails if one of them failed.

It works in sync and async flows alike.

The same loop runs inside a hybrid job (`run_variational_in_job`), where it uses the job's
priority device, reports through `log_metric` and checkpoints with `save_job_checkpoint`; the
flow waiting for the job publishes those metrics.

One module per concern:

- `observables`: `Observable`, weighted Pauli strings, grouped into commuting measurements;
- `costs`: what is minimised, `ParametricCost` and `FunctionCost`;
- `optimizers`: `GradientDescent`, `SPSA`, `ScipyMinimize`;
- `loop`: the loop itself (`optimize`, `LoopState`), with no Prefect in it;
- `checkpoints`: an experiment's checkpoint file, local or in S3;
- `reports`: the summary markdown and its convergence plot;
- `publishing`: what a flow run publishes as it iterates, from a thread of its own;
- `flow`: `run_variational` and its iteration task;
- `in_job`: `run_variational_in_job`, with no Prefect in it;
- `qaoa`: QAOA for MaxCut on any graph (`MaxCut`), and the strategy that finds good angles
  (linear-ramp start, growth layer by layer), with no Prefect in it;
- `qaoa_flow`: `run_qaoa_maxcut`, that strategy in a flow.

Names are imported on first use, so that a hybrid job importing `run_variational_in_job` does
not import Prefect.

Example:
    ```python
    from prefect import flow
    from prefect_braket import BraketDevice
    from prefect_braket.variational import Observable, ParametricCost, run_variational

    H2 = Observable.from_dict({"II": -1.0524, "IZ": 0.3979, "ZI": -0.3979, "ZZ": -0.0113, "XX": 0.1809})
    ANSATZ = "OPENQASM 3.0;\\ninput float theta;\\nqubit[2] q;\\nry(theta) q[0];\\nx q[1];\\ncnot q[0], q[1];\\n"

    @flow
    def vqe():
        return run_variational(ParametricCost(ANSATZ, H2, ["theta"]), [0.0], experiment_id="h2",
                               device=BraketDevice(), optimizer="gradient-descent")
    ```
"""

from __future__ import annotations

from prefect_braket.core.lazy import lazy_exports

_EXPORTS = {
    "Observable": ".observables",
    "FunctionCost": ".costs",
    "ParametricCost": ".costs",
    "GradientDescent": ".optimizers",
    "SPSA": ".optimizers",
    "ScipyMinimize": ".optimizers",
    "run_variational": ".flow",
    "run_variational_in_job": ".in_job",
    "MaxCut": ".qaoa",
    "linear_ramp": ".qaoa",
    "interpolate": ".qaoa",
    "grow_layers": ".qaoa",
    "run_qaoa_maxcut": ".qaoa_flow",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
