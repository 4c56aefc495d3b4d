"""dengine vs etcd on this machine: ``python benches/compare_etcd.py [--ops N] [--rounds N]``.

The same as ``dengine bench compare``: starts a 3-node dengine cluster and a 3-node etcd cluster
on loopback (fsync on for both), runs every workload against each, alternating, for three
rounds, and writes a markdown report to benches/reports/. Needs etcd on PATH; on Debian or
Ubuntu: ``sudo apt-get install -y etcd-server etcd-client``. Every flag: ``--help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import dengine  # noqa: F401  (an installed dengine, compiled core included)
except ImportError:  # run from a checkout without installing: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dengine.cli import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", str(Path(__file__).resolve().parent / "reports")]
    sys.exit(main(["bench", "compare", *args]))
