from services.delivery.republish import lost_partitions


def test_a_partition_ending_before_what_delivery_wrote_is_lost_and_retention_or_growth_is_not():
    written = {0: 10, 1: 5, 2: 7}
    # 0 grew (others published), 1 is exactly where delivery left it, 2 numbers from 0 again.
    assert lost_partitions(written, {0: 12, 1: 5, 2: 1}) == [2]


def test_a_partition_whose_end_is_unknown_counts_as_intact():
    assert lost_partitions({0: 10}, {}) == []
