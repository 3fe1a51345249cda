"""A user module a job's code calls into, shipped by value with `include_modules`."""

FACTOR = 3


def scale(x):
    return x * FACTOR
