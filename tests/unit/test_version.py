"""The installed command reports its version and which core it runs on."""

import os
import subprocess
import sys

import dengine


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "DENGINE_PURE_PYTHON"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "dengine", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_version_reports_compiled_core():
    out = _run("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"dengine {dengine.__version__};")
    assert "compiled core" in out.stdout


def test_pure_python_switch_is_reported():
    out = _run("--version", DENGINE_PURE_PYTHON="1")
    assert out.returncode == 0, out.stderr
    assert "pure-Python reference core" in out.stdout


def test_no_command_prints_help_and_fails():
    out = _run()
    assert out.returncode == 2
    assert "usage: dengine" in out.stdout


def test_public_api_resolves_and_import_stays_light():
    code = (
        "import sys, dengine\n"
        "light = not any(m in sys.modules for m in ('grpc', 'rocksdict'))\n"
        "missing = [n for n in dengine.__all__ if getattr(dengine, n, None) is None]\n"
        "print(light, missing)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DENGINE_PURE_PYTHON"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]"]
