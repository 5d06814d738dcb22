"""The load-test scenarios of perf.harness: queue (k6), reservation + payment, spike, soak, one
module each, with what they share in `base` and the flow driver's HTTP client in `client`.

Each returns a `Scenario` (perf.results) built from raw samples; an exception inside one is
recorded as a problem of that scenario and the run goes on to the next.
"""
