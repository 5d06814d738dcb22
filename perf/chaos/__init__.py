"""The failure matrix (`make chaos`): the reference report's section 6, as measured cases.

Each case starts real servers on loopback (`topology.py`), drives steady fans through the HTTP
APIs (`fans.py`), injects one fault (`cases.py`), then holds the system to what its clients were
told (`invariants.py`). `python -m perf.chaos` runs them and writes the figures into
`perf/reports/<ts>/`; `tests/chaos/` runs every case at smoke size.
"""
