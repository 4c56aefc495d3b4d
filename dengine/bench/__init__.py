"""``dengine bench``: the same client workloads against dengine and against etcd.

Workloads (:mod:`dengine.bench.workloads`) mirror d-engine's published table: sequential writes
from one client, concurrent writes from 100 clients over 10 connections, reads at each
consistency level, and a 90/10 read/write mix. A *target* (:mod:`dengine.bench.targets`) is
what the workload talks to: dengine's Python client, dengine's in-process client, or an etcd v3
cluster through plain unary gRPC calls. :mod:`dengine.bench.compare` runs both side by side.
"""

from dengine.bench.stats import LatencyStats, Summary
from dengine.bench.workloads import WORKLOADS, WorkloadSpec, run_workload

__all__ = ["LatencyStats", "Summary", "WORKLOADS", "WorkloadSpec", "run_workload"]
