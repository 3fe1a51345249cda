"""OpenQASM 3 programs whose results are known in closed form, for tests of the devices that run them."""

ROTATION = """OPENQASM 3.0;
input float theta;
qubit[1] q;
rx(theta) q[0];
#pragma braket result expectation z(q[0])
#pragma braket result expectation y(q[0])
#pragma braket result probability q[0]
"""

ENTANGLED = """OPENQASM 3.0;
input float theta;
qubit[2] q;
ry(theta) q[0];
cnot q[0], q[1];
#pragma braket result expectation z(q[0]) @ z(q[1])
#pragma braket result expectation z(q[1])
#pragma braket result probability
"""
