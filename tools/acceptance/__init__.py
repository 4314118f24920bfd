"""A lab's acceptance suite: does this testbed do what the papers' testbed did?

`hil acceptance CONFIG` runs the tests of `tools/acceptance/suite/` with pytest against the
testbed the config names: the emulated vBS, real srsRAN over ZMQ, or a B210 lab with its
GPM-8213 (labgrid's `--lg-env` is the model). Each test declares what it needs
(`@pytest.mark.needs("ue_rtctl")`, capabilities.py); a testbed without it skips the test
with that reason, which the report lists. The report (report.md, with the figures each test
measured and the testbed's identity) lets a lab compare its testbed with another's.
"""
