"""An independent QAOA reference: the state built directly in numpy, and a multi-start search on it.

Nothing of the library's circuit or simulator is used, so the tests and `bench/qaoa_quality.py`
check the library's energies against it, and measure the library's strategy against the best
angles it finds.
"""

import numpy as np
from scipy.optimize import minimize

from prefect_braket.variational.qaoa import MaxCut


def statevector_energy(graph: MaxCut, angles) -> float:
    """Minus the expected cut, from the QAOA state built directly: exp(-iγC) is a phase per
    assignment, exp(-iβX) a rotation of every qubit."""
    layers, n = len(angles) // 2, graph.nodes
    cut = graph.cut_values()
    psi = np.full(2 ** n, 2 ** (-n / 2), dtype=complex)
    for gamma, beta in zip(angles[:layers], angles[layers:], strict=True):
        psi = (psi * np.exp(-1j * gamma * cut)).reshape([2] * n)
        for qubit in range(n):
            zero, one = np.take(psi, 0, axis=qubit), np.take(psi, 1, axis=qubit)
            psi = np.stack([np.cos(beta) * zero - 1j * np.sin(beta) * one,
                            -1j * np.sin(beta) * zero + np.cos(beta) * one], axis=qubit)
        psi = psi.reshape(-1)
    return -float(np.real(np.vdot(psi, cut * psi)))


def bfgs(graph: MaxCut, start) -> tuple[float, list[float]]:
    """BFGS on the reference energy from `start`: the energy and the angles it stops at."""
    found = minimize(lambda x: statevector_energy(graph, x), np.asarray(start, dtype=float), method="BFGS")
    return float(found.fun), found.x.tolist()


def thorough_best(graph: MaxCut, layers: int, starts: int, seed: int = 0) -> tuple[float, list[float]]:
    """The best energy (and its angles) of BFGS runs from `starts` random angles, γ in [0, π) and
    β in [0, π/2)."""
    rng = np.random.default_rng(seed)
    return min((bfgs(graph, np.concatenate([rng.uniform(0, np.pi, layers), rng.uniform(0, np.pi / 2, layers)]))
                for _ in range(starts)), key=lambda found: found[0])
