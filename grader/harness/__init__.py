"""The probe/judge harness every stage suite is written in.

A test has three parts:

    inputs  chosen by the test, from a seeded generator;
    probe   `probe(module, **inputs) -> plain data`: calls the target's stage module and returns only plain data
            (numbers, strings, NumPy arrays of numbers, lists, dicts, or a `raised(...)` record: what the call
            returned, or the exception it raised, judged by exact builtin type and what its message names);
    judge   compares the plain data with the reference's probe output on the same inputs, or with a property.

The probe is the only part that runs learner code, and its output is plain data, so the judgment can happen in another
(trusted) process than the one that ran the learner's code. Most tests are one call:

    check(probe_encode, text="hello", tol=EXACT, what="token ids")

which runs the probe on the target and on the reference and judges the two with `assert_close`.
"""
from .judge import (EXACT, F32, F64, GRADCHECK, Mismatch, Mistake, Tol, assert_close, assert_true,  # noqa: F401
                    central_difference, randomise_parameters, seeded)
from .probe import (Plain, ProbeError, Unimplemented, check_transportable, is_record, plain, raised,  # noqa: F401
                    raised_in, run_probe, sibling)
