"""``dengine --version`` and ``--help`` load neither gRPC nor RocksDB (the node is imported only
when ``serve`` runs), and ``dengine serve --help`` still lists every config flag."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from dengine.config import build_config

CHECK = (
    "import sys\n"
    "from dengine.cli import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('grpc' in sys.modules, 'rocksdict' in sys.modules)\n"
)


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_neither_grpc_nor_rocksdb(argv, env_for):
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(argv=argv)],
        capture_output=True, text=True, env=env_for(), timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_serve_help_lists_every_config_flag(dengine):
    out = dengine("serve", "--help")
    assert out.returncode == 0, out.stderr
    config = build_config()
    flags = [
        f"--{section.name}.{key.name.replace('_', '-')}"
        for section in dataclasses.fields(config)
        for key in dataclasses.fields(getattr(config, section.name))
    ]
    assert len(flags) > 30
    missing = [f for f in flags if f not in out.stdout]
    assert not missing
    assert "--join HOST:PORT" in out.stdout
