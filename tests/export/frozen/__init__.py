"""A frozen copy of the export stage as it was before its speed-up (carelink 2026-11, commit f9018c2).

The byte-for-byte tests (``test_export_identical.py``) run it beside ``carelink.export`` on the same inputs and
keys and compare every file written. Do not edit these modules to follow changes in ``carelink.export``: they are
the reference. Only the two modules the speed-up rewrote are kept (``consent``, ``stage``); the stage imports the
unchanged ones (publish, report, schema, summaries) from ``carelink.export``.
"""
