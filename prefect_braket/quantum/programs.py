"""Quantum programs as Braket receives them: OpenQASM 3 source with its input values.

OpenQASM 3 is the program format on Braket's wire, so it is the format here. A Braket SDK
`Circuit` is accepted by duck typing (anything with `to_ir`), and a Qiskit circuit where
qiskit is installed. `Program.cache_key()` is stable across processes and numpy versions: the
source with line endings and blank lines normalised, and the inputs as plain numbers.

Example:
    ```python
    program = to_program('''OPENQASM 3.0;
    input float theta;
    qubit[1] q;
    rx(theta) q[0];
    #pragma braket result expectation z(q[0])
    ''', inputs={"theta": np.float64(0.5)})
    program.qubit_count()   # 1
    program.cache_key()     # the same for 0.5 and np.float64(0.5)
    ```
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Sequence

from prefect_braket.core.errors import PrefectBraketError

PROGRAM_HEADER = {"name": "braket.ir.openqasm.program", "version": "1"}
INPUT_DECLARATION = re.compile(r"^\s*input\s+[\w\[\], ]+?\s+(\w+)\s*;", re.MULTILINE)
LEGACY_QUBIT_REGISTER = re.compile(r"^\s*qreg\s+\w+\s*\[\s*(\d+)\s*\]\s*;", re.MULTILINE)
PHYSICAL_QUBIT = re.compile(r"\$(\d+)")
REGISTER = re.compile(r"^\s*qubit\s*(?:\[\s*(\d+)\s*\])?\s+(\w+)\s*;", re.MULTILINE)
RESULT_PRAGMA = re.compile(r"^[ \t]*#pragma[ \t]+braket[ \t]+result[ \t]+(\w+)[ \t]*(.*?)[ \t]*;?[ \t]*$", re.MULTILINE)
FACTOR = re.compile(r"(\w+)\s*\(\s*([^)]*?)\s*\)")
RESULT_TYPE_NAMES = {
    "expectation": "expectation", "variance": "variance", "sample": "sample", "probability": "probability",
    "state_vector": "statevector", "density_matrix": "densitymatrix", "amplitude": "amplitude",
}


class ProgramSyntaxError(PrefectBraketError, ValueError):
    """OpenQASM source that does not parse; the message names the line and what was expected."""


@functools.lru_cache(maxsize=1024)
def syntax_error(source: str) -> str | None:
    """Why `source` is not valid OpenQASM 3 (line, token, what was expected), or None if it parses.

    The grammar is the one Braket's simulators parse with; its own error (`QASM3ParsingError`)
    carries no message at all. Cached: a variational loop sends the same sources again and again.
    """
    from antlr4.error.Errors import ParseCancellationException, RecognitionException
    from braket.default_simulator.openqasm.parser.openqasm_parser import (
        QASM3ParsingError,
        parse,
    )

    try:
        parse(source)
    except QASM3ParsingError as error:
        cause = error.__cause__
        problem = cause.args[0] if isinstance(cause, ParseCancellationException) and cause.args else cause
        if not isinstance(problem, RecognitionException) or problem.offendingToken is None:
            return "OpenQASM 3 syntax error (the parser gave no position)."
        token = problem.offendingToken
        lines = source.splitlines()
        number = token.line
        if token.type == token.EOF:  # what is missing is missing from the last line that has text
            number = max((n for n, text in enumerate(lines, 1) if text.strip()), default=number)
        line = lines[number - 1].strip() if 0 < number <= len(lines) else ""
        expected = problem.getExpectedTokens()
        recognizer = problem.recognizer
        wanted = expected.toString(recognizer.literalNames, recognizer.symbolicNames) if expected else ""
        where = "the end of the program" if token.type == token.EOF else repr(token.text)
        message = f"OpenQASM 3 syntax error on line {number} at {where}" + (f", in `{line}`" if line else "")
        if wanted:
            message += f": expected {wanted}"
        if wanted == "';'" and token.column == 0:
            message += " (the line before it may lack its ';')"
        return message + "."
    return None


def plain_value(value: Any) -> Any:
    """A value as JSON holds it: numpy scalars and arrays as Python numbers and lists, complex
    numbers as Braket's `[real, imaginary]` pairs, enums as their values."""
    if isinstance(value, Enum):
        return plain_value(value.value)
    if hasattr(value, "tolist"):
        return plain_value(value.tolist())
    if isinstance(value, complex):
        return [value.real, value.imag]
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


def normalize_source(source: str) -> str:
    """The source without CRLF, indentation, trailing spaces or blank lines: same program, same text."""
    lines = (line.strip() for line in source.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line) + "\n"


@dataclass(frozen=True)
class Program:
    """An OpenQASM 3 program and the values of its `input` parameters."""

    source: str
    inputs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or "OPENQASM" not in self.source.split(";", 1)[0].upper():
            raise ValueError(
                "A program is OpenQASM 3 source starting with 'OPENQASM 3.0;' (or a Braket Circuit / "
                f"Qiskit circuit); got {str(self.source)[:60]!r}."
            )
        object.__setattr__(self, "source", normalize_source(self.source))
        object.__setattr__(self, "inputs", {str(k): plain_value(v) for k, v in sorted((self.inputs or {}).items())})
        declared = set(INPUT_DECLARATION.findall(self.source))
        missing = sorted(declared - set(self.inputs))
        unknown = sorted(set(self.inputs) - declared)
        if missing:
            example = ", ".join(repr(m) + ": ..." for m in missing)
            raise ValueError(f"Program input(s) {missing} have no value: pass inputs={{{example}}}.")
        if unknown:
            raise ValueError(f"Input(s) {unknown} are not declared in the program (declared: {sorted(declared)}).")

    def check_syntax(self) -> None:
        """Raises `ProgramSyntaxError` if the source is not valid OpenQASM 3."""
        problem = syntax_error(self.source)
        if problem:
            raise ProgramSyntaxError(problem)

    def canonical(self) -> str:
        """The text two equal programs share, whatever their spacing or number types."""
        return json.dumps({"source": self.source, "inputs": self.inputs}, sort_keys=True, separators=(",", ":"))

    def cache_key(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def qubit_count(self) -> int:
        """Qubits the program uses: declared registers, or the highest physical qubit `$n` plus one."""
        declared = sum(int(n) if n else 1 for n, _ in REGISTER.findall(self.source))
        declared += sum(int(n) for n in LEGACY_QUBIT_REGISTER.findall(self.source))
        physical = [int(n) for n in PHYSICAL_QUBIT.findall(self.source)]
        return max(declared, max(physical) + 1 if physical else 0)

    def _registers(self) -> dict[str, range]:
        registers, offset = {}, 0
        for size, name in REGISTER.findall(self.source):
            registers[name] = range(offset, offset + (int(size) if size else 1))
            offset += int(size) if size else 1
        return registers

    def _targets(self, text: str, registers: dict[str, range]) -> list[int]:
        targets: list[int] = []
        for item in filter(None, (t.strip() for t in text.split(","))):
            if item.startswith("$"):
                targets.append(int(item[1:]))
                continue
            match = re.fullmatch(r"(\w+)\s*(?:\[\s*(\d+)\s*\])?", item)
            if not match or match.group(1) not in registers:
                raise ValueError(f"Result target {item!r} is not a declared qubit.")
            qubits = registers[match.group(1)]
            targets.extend([qubits[int(match.group(2))]] if match.group(2) else list(qubits))
        return targets

    def result_types(self) -> list[dict[str, Any]]:
        """The `#pragma braket result` requests, in order, as Braket's result-type documents."""
        registers = self._registers()
        requested = []
        for name, argument in RESULT_PRAGMA.findall(self.source):
            kind = RESULT_TYPE_NAMES.get(name.lower())
            if kind is None:
                raise ValueError(f"Unknown result type {name!r} in '#pragma braket result {name} {argument}'.")
            spec: dict[str, Any] = {"type": kind}
            every_qubit = re.fullmatch(r"([xyzhi])\s+all", argument.strip(), re.IGNORECASE)
            if kind in ("expectation", "variance", "sample") and every_qubit:
                # One value per qubit, as Braket returns for a targetless observable.
                spec.update(observable=[every_qubit.group(1).lower()], targets=None, per_qubit=True)
            elif kind in ("expectation", "variance", "sample"):
                factors = FACTOR.findall(argument)
                if not factors or "hermitian" in argument.lower():
                    spec["observable"] = None if not factors else ["hermitian"]
                    spec["targets"] = self._targets(argument.rsplit(")", 1)[-1], registers) if factors else None
                else:
                    spec["observable"] = [f.lower() for f, _ in factors]
                    spec["targets"] = [t for _, target in factors for t in self._targets(target, registers)]
            elif kind == "amplitude":
                spec["states"] = re.findall(r'"([01]+)"', argument)
            elif argument and argument.lower() != "all":
                spec["targets"] = self._targets(argument, registers)
            requested.append(spec)
        return requested

    def action(self) -> dict[str, Any]:
        """The `action` of Braket's CreateQuantumTask (an `OpenQASMProgram` document)."""
        return {"braketSchemaHeader": PROGRAM_HEADER, "source": self.source, "inputs": self.inputs or None}


# Qiskit's OpenQASM 3 export names gates after stdgates.inc; Braket's simulators and QPUs know
# the same gates under Braket's names and read no include files.
QISKIT_GATE_NAMES = {
    "cx": "cnot", "ccx": "ccnot", "sdg": "si", "tdg": "ti", "sx": "v", "sxdg": "vi",
    "p": "phaseshift", "cp": "cphaseshift", "id": "i", "u": "U",
}
QISKIT_GATE = re.compile(r"^(\s*)(" + "|".join(sorted(QISKIT_GATE_NAMES, key=len, reverse=True)) + r")\b", re.MULTILINE)


def from_qiskit_source(source: str) -> str:
    """Qiskit's OpenQASM 3 export, with gate names as Braket knows them and no stdgates.inc."""
    source = re.sub(r'^\s*include\s+"stdgates.inc"\s*;\s*$', "", source, flags=re.MULTILINE)
    return QISKIT_GATE.sub(lambda m: m.group(1) + QISKIT_GATE_NAMES[m.group(2)], source)


def input_sets(programs: Sequence[Any], inputs: Any) -> list[dict[str, Any] | None]:
    """One input dict per program, from one dict for all of them or a list of them."""
    if isinstance(inputs, dict) or inputs is None:
        return [inputs] * len(programs)
    sets = list(inputs)
    if len(sets) != len(programs):
        raise ValueError(f"{len(programs)} programs but {len(sets)} input sets.")
    return sets


def to_program(program: Any, inputs: dict[str, Any] | None = None) -> Program:
    """A `Program` from OpenQASM source, a `Program`, a Braket SDK `Circuit` or a Qiskit circuit."""
    if isinstance(program, Program):
        return Program(program.source, {**program.inputs, **(inputs or {})})
    if isinstance(program, str):
        return Program(program, inputs or {})
    if hasattr(program, "to_ir"):  # braket.circuits.Circuit
        ir = program.to_ir(ir_type="OPENQASM")
        return Program(ir.source, {**(getattr(ir, "inputs", None) or {}), **(inputs or {})})
    if type(program).__module__.startswith("qiskit"):
        from qiskit import qasm3

        return Program(from_qiskit_source(qasm3.dumps(program)), inputs or {})
    raise TypeError(
        f"Cannot run a {type(program).__name__}: pass OpenQASM 3 source, a Program, a Braket Circuit or a "
        "Qiskit circuit."
    )
