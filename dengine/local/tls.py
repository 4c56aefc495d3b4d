"""Where a local cluster made with ``--tls`` keeps its certificates, and the client's share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dengine.client.types import ClientTLS

__all__ = ["TLS_DIR", "recorded_client_tls"]

#: The certificates' directory under the cluster's root.
TLS_DIR = "certs"


def recorded_client_tls(root: str | os.PathLike[str]) -> ClientTLS:
    """The client certificate of a local cluster made with ``--tls`` (empty: no TLS)."""
    d = Path(root) / TLS_DIR
    if not (d / "ca.pem").is_file() or not (d / "client.pem").is_file():
        return {}
    return {"cacert": str(d / "ca.pem"), "cert": str(d / "client.pem"),
            "key": str(d / "client.key")}
