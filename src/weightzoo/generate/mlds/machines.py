"""The DS1/DS2 machines, re-exported from :mod:`weightzoo.tasks.machines` (their home)."""

from weightzoo.tasks.machines import (
    COMMAND_PROBABILITY,
    DATA_LINES,
    INPUT_WIDTH,
    MACHINES,
    OUTPUT_WIDTH,
    TRIGGER,
    TRIGGER_SPAN,
    SequenceSet,
    check_machines,
    insert_triggers,
    machine_set,
    modified_name,
    random_inputs,
    simulate,
    trigger_inputs,
)

__all__ = [
    "COMMAND_PROBABILITY",
    "DATA_LINES",
    "INPUT_WIDTH",
    "MACHINES",
    "OUTPUT_WIDTH",
    "TRIGGER",
    "TRIGGER_SPAN",
    "SequenceSet",
    "check_machines",
    "insert_triggers",
    "machine_set",
    "modified_name",
    "random_inputs",
    "simulate",
    "trigger_inputs",
]
