"""Wire values and the kernels' direction codes are the same numbers."""

from fastpath import consensus
from quorum.v1 import verdict_pb2
from server.consensus_policy import UNCERTAIN, direction_name


def test_direction_codes_match_proto():
    assert consensus.BULLISH == verdict_pb2.DIRECTION_BULLISH
    assert consensus.BEARISH == verdict_pb2.DIRECTION_BEARISH
    assert consensus.NEUTRAL == verdict_pb2.DIRECTION_NEUTRAL
    assert consensus.UNSPECIFIED == verdict_pb2.DIRECTION_UNSPECIFIED
    assert UNCERTAIN == verdict_pb2.DIRECTION_UNCERTAIN


def test_direction_names_follow_proto():
    for value in verdict_pb2.Direction.values():
        proto_name = verdict_pb2.Direction.Name(value).removeprefix("DIRECTION_").lower()
        assert direction_name(value) == proto_name
