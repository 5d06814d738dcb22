from perf.ledger import cpu_ms_per_flow, records_per_flow


class TestRecordsPerFlow:
    def test_records_each_topic_gained_are_divided_by_the_completed_flows(self) -> None:
        before = {"reservation.requested": 100, "seat.held": 50, "idle": 7}
        after = {"reservation.requested": 300, "seat.held": 250, "idle": 7, "new-changelog": 400}
        per_flow = records_per_flow(before, after, flows=200)
        assert per_flow == {
            "total": 4.0,
            "new-changelog": 2.0,
            "reservation.requested": 1.0,
            "seat.held": 1.0,
        }

    def test_no_completed_flow_means_no_figure(self) -> None:
        assert records_per_flow({}, {"a": 5}, flows=0) == {}


class TestCpuPerFlow:
    def test_cpu_of_each_process_in_the_window_per_completed_flow_with_the_driver_apart(
        self,
    ) -> None:
        t = [0.0, 1.0, 2.0, 3.0, 4.0]
        cpu = {
            "reservation": [0.0, 50.0, 50.0, 50.0, 90.0],  # % of one core over the second before
            "kafka": [0.0, 10.0, 10.0, 10.0, 0.0],
            "load-driver": [0.0, 20.0, 20.0, 20.0, 0.0],
        }
        # Window (0, 3]: reservation 1,500 ms, kafka 300 ms, driver 600 ms over 100 flows.
        per_flow = cpu_ms_per_flow(t, cpu, 0.0, 3.0, flows=100)
        assert per_flow["reservation"] == 15.0 and per_flow["kafka"] == 3.0
        assert per_flow["system"] == 18.0 and per_flow["driver"] == 6.0

    def test_an_empty_window_or_no_flows_gives_no_figure(self) -> None:
        assert cpu_ms_per_flow([0.0, 1.0], {"a": [0.0, 5.0]}, 5.0, 9.0, flows=10) == {}
        assert cpu_ms_per_flow([0.0, 1.0], {"a": [0.0, 5.0]}, 0.0, 1.0, flows=0) == {}
