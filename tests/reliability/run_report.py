"""What the reliability suite prints at the end of a run (tests/reliability/conftest.py): the fault
table (each fault, what the system did, answers served, wrong answers, time to recover), the
fuzzing run's case count and the sustained load's latencies and errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultRow:
    fault: str
    behaviour: str
    answers_served: int
    wrong_answers: int
    recovery: str  # how long until the system was whole again, and what "whole" means there
    test: str


FAULTS: list[FaultRow] = []
LINES: list[str] = []  # one line per fuzzing or load run


def record(row: FaultRow) -> None:
    FAULTS.append(row)


def record_fuzzing(cases: int, operations: int) -> None:
    LINES.append(f"fuzzing: {cases} generated requests over {operations} operations, admin and read keys")


def record_line(line: str) -> None:
    LINES.append(line)


def fault_table() -> str:
    lines = [
        "| fault | what the system did | answers served | wrong answers | time to recover | test |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for row in FAULTS:
        lines.append(
            f"| {row.fault} | {row.behaviour} | {row.answers_served} | {row.wrong_answers} | {row.recovery} | `{row.test}` |"
        )
    return "\n".join(lines)
