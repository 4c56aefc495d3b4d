"""Local clusters of real ``dengine serve`` processes on loopback, used by ``dengine cluster``,
``dengine demo`` and the benchmarks (see :mod:`dengine.local.cluster`)."""
