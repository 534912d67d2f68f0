"""Prints the fault table, the fuzzing case count and the load figures after a run that included
the reliability suite."""

from __future__ import annotations

import pytest

from tests.reliability import run_report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if run_report.FAULTS:
        terminalreporter.section("fault table (tests/reliability)")
        terminalreporter.write_line(run_report.fault_table())
    if run_report.LINES:
        terminalreporter.section("fuzzing and load (tests/reliability)")
        for line in run_report.LINES:
            terminalreporter.write_line(line)
