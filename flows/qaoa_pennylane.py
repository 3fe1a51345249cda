"""QAOA for MaxCut with PennyLane inside a hybrid job: Braket's "QAOA with Amazon Braket Hybrid
Jobs and PennyLane" example, as a Prefect flow.

    python flows/qaoa_pennylane.py                 # prints {"cost": ..., "iterations": ..., ...} last

The graph travels as the job's input data (a networkx adjacency list); the job trains a p-layer
QAOA circuit with PennyLane's gradient descent, logs the loss of every step (`log_metric`: the
waiting flow shows it live as a progress bar and a metrics table) and checkpoints after every
step. Its device is the job's: `braket.local.qubit` for `local:braket/...` devices, and
`braket.aws.qubit` on the job's priority device for an AWS ARN (Amazon Braket, or the local
endpoint that `AWS_ENDPOINT_URL` names). A second run with `resume_from=<the first job's ARN>`
starts from the first job's last checkpoint, as the example's "continued" job does.

It needs PennyLane and Braket's PennyLane plugin in the environment that runs the job (the test
environment has them; see the README's "For Braket users").
"""

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow  # noqa: E402

from prefect_braket import HybridJob, hybrid_job  # noqa: E402


def qaoa_training(p: int = 2, steps: int = 6, stepsize: float = 0.1, seed: int = 7, resume_from_job: str = ""):
    """The job's code: trains QAOA for the input graph, a checkpoint per step, resuming if asked."""
    import networkx as nx
    import pennylane as qml
    from pennylane import numpy as np
    from pennylane import qaoa

    from prefect_braket.jobs import (
        get_input_data_dir,
        get_job_device_arn,
        load_job_checkpoint,
        log_metric,
        save_job_checkpoint,
    )

    graph = nx.read_adjlist(Path(get_input_data_dir()) / "graph.adjlist", nodetype=int)
    wires = sorted(graph.nodes)
    cost_h, mixer_h = qaoa.maxcut(graph)
    device_arn = get_job_device_arn()
    if device_arn.startswith("local:"):
        backend = "braket_dm" if device_arn.endswith("braket_dm") else "braket_sv"
        device = qml.device("braket.local.qubit", backend=backend, wires=wires, shots=None)
    else:  # the job's priority device, on Amazon Braket (or the endpoint the job's environment names)
        device = qml.device("braket.aws.qubit", device_arn=device_arn, wires=wires, shots=None)

    def layer(gamma, alpha):
        qaoa.cost_layer(gamma, cost_h)
        qaoa.mixer_layer(alpha, mixer_h)

    @qml.qnode(device)
    def cost_function(params):
        for wire in wires:
            qml.Hadamard(wires=wire)
        qml.layer(layer, p, params[0], params[1])
        return qml.expval(cost_h)

    if resume_from_job:  # a job started with copy_checkpoints_from_job has the earlier job's files
        checkpoint = load_job_checkpoint(job_name=resume_from_job)
        start, params = checkpoint["iteration"] + 1, np.array(checkpoint["params"], requires_grad=True)
    else:
        start, params = 0, np.array(np.random.default_rng(seed).uniform(0, 0.5, (2, p)), requires_grad=True)
    optimizer = qml.GradientDescentOptimizer(stepsize=stepsize)
    cost = float(cost_function(params))
    for iteration in range(start, steps):
        params = optimizer.step(cost_function, params)
        cost = float(cost_function(params))
        log_metric(metric_name="loss", value=cost, iteration_number=iteration)
        save_job_checkpoint({"iteration": iteration, "params": params.tolist(), "cost": cost})
    return {"cost": cost, "params": params.tolist(), "first_iteration": start, "iterations": steps}


@flow(name="qaoa-pennylane")
def qaoa_pennylane(num_nodes: int = 6, num_edges: int = 8, graph_seed: int = 1967, p: int = 2, steps: int = 6,
                   device: str = "local:braket/braket_sv", resume_from: str | None = None) -> dict:
    """Trains QAOA for a random graph (`num_nodes`, `num_edges`, `graph_seed`) in a hybrid job on
    `device`; with `resume_from` (a job ARN), continues from that job's last checkpoint up to `steps`."""
    import networkx as nx

    with tempfile.TemporaryDirectory(prefix="qaoa-graph-") as tmp:
        graph_file = Path(tmp) / "graph.adjlist"
        nx.write_adjlist(nx.gnm_random_graph(num_nodes, num_edges, seed=graph_seed), graph_file)
        earlier = HybridJob.attach(resume_from).name if resume_from else ""
        job = hybrid_job(device=device, input_data=str(graph_file), copy_checkpoints_from_job=resume_from)(
            qaoa_training)(p=p, steps=steps, resume_from_job=earlier)
    result = job.result(poll_interval_seconds=1.0)
    return {"job_arn": job.arn, "job_name": job.name, **result}


if __name__ == "__main__":
    print(json.dumps(qaoa_pennylane()))
