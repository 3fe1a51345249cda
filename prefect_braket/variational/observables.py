"""Weighted sums of Pauli strings: what a `ParametricCost` measures, and its exact ground energy.

Terms are grouped qubit-wise commuting, so that one circuit measures a whole group: H2's five
terms take two circuits, not four.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PAULI_STRING = re.compile(r"^[IXYZ]+$")
PAULI_MATRICES = {
    "I": np.eye(2), "X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1.0, -1.0]),
}


@dataclass(frozen=True)
class Observable:
    """A weighted sum of Pauli strings; character i of a string acts on qubit i."""

    terms: tuple[tuple[str, float], ...]
    offset: float = 0.0

    @classmethod
    def from_dict(cls, terms: dict[str, float], offset: float = 0.0) -> "Observable":
        lengths = {len(p) for p in terms}
        if len(lengths) != 1 or not all(PAULI_STRING.match(p) for p in terms):
            raise ValueError(
                f"Observable terms must be Pauli strings of one length over I, X, Y, Z; got {sorted(terms)}.")
        return cls(tuple((p, float(c)) for p, c in terms.items()), float(offset))

    @property
    def num_qubits(self) -> int:
        return len(self.terms[0][0])

    def matrix(self) -> np.ndarray:
        size = 2 ** self.num_qubits
        total = self.offset * np.eye(size, dtype=complex)
        for paulis, coefficient in self.terms:
            factor = np.array([[1.0]])
            for letter in paulis:
                factor = np.kron(factor, PAULI_MATRICES[letter])
            total = total + coefficient * factor
        return total

    def exact_ground_energy(self) -> float:
        """The lowest eigenvalue, by exact diagonalisation."""
        return float(np.linalg.eigvalsh(self.matrix())[0])

    def measured_terms(self) -> list[tuple[str, float]]:
        return [(p, c) for p, c in self.terms if set(p) != {"I"}]

    def constant(self) -> float:
        return self.offset + sum(c for p, c in self.terms if set(p) == {"I"})

    def groups(self) -> list[list[tuple[str, float]]]:
        """Terms in groups that one circuit measures together (qubit-wise commuting)."""
        groups: list[tuple[list[str], list[tuple[str, float]]]] = []
        for paulis, coefficient in self.measured_terms():
            for basis, members in groups:
                if all(b == "I" or p == "I" or b == p for b, p in zip(basis, paulis, strict=True)):
                    basis[:] = [p if b == "I" else b for b, p in zip(basis, paulis, strict=True)]
                    members.append((paulis, coefficient))
                    break
            else:
                groups.append((list(paulis), [(paulis, coefficient)]))
        return [members for _, members in groups]


def expectation_pragma(paulis: str, register: str = "q") -> str:
    """The OpenQASM result pragma measuring one Pauli string's expectation."""
    factors = [f"{p.lower()}({register}[{i}])" for i, p in enumerate(paulis) if p != "I"]
    return "#pragma braket result expectation " + " @ ".join(factors)
