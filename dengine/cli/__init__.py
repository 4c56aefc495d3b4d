"""The ``dengine`` command: one module per group of subcommands.

:func:`main` is the entry point; ``--version`` and ``--help`` import neither gRPC nor RocksDB.
"""

from dengine.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
