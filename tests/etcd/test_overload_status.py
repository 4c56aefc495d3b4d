"""Shed writes (apply lag, dengine.node.admission) reach etcd clients as etcd's own
ErrTooManyRequests: RESOURCE_EXHAUSTED "etcdserver: too many requests", which they retry."""

from __future__ import annotations

import grpc
import pytest

from dengine.errors import Overloaded
from dengine.etcd.errors import etcd_status
from dengine.node.admission import ApplyLag


def test_a_write_shed_on_apply_lag_is_etcds_too_many_requests():
    with pytest.raises(Overloaded) as err:
        ApplyLag(5000).check(10_001, 5000)  # etcd's own gap limit is 5,000 entries
    assert etcd_status(err.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      "etcdserver: too many requests")
