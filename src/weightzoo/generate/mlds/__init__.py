"""MLDS: recurrent networks mimicking simple machines, with a backdoor, and random automata.

DS1 (machines), DS2 (the machines with a backdoor trigger) and DS3 (random automata); see
``docs/mlds.md`` for every rule and reading.
"""
