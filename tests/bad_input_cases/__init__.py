"""Rows of tests/test_bad_input.py, one module per area: each defines ``CASES``, a list of
``(argv, expected text in stderr)`` with ``{tmp}``, ``{model}``, ``{wide_model}`` and
``{checkpoint}`` placeholders, and may define ``make_files(tmp)`` to write damaged inputs."""
