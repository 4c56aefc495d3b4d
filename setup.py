"""Build dengine: the Cython kernels in dengine/_core and the protobuf/gRPC stubs.

The stubs are generated from protos/dengine/v1/*.proto into dengine/v1/ at build time
(grpcio-tools is a build requirement); they are never committed. So are the benchmark's etcd
stubs, from protos/etcd/dengine/etcd/pb/*.proto (etcd's own packages and field numbers) into
dengine/etcd/pb/, used by the etcd API (dengine.etcd) and the benchmark's etcd target.

Set DENGINE_DEBUG_BUILD=1 to compile the kernels with bounds checks and assertions on.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "protos"
PROTO_OUT = ROOT / "dengine" / "v1"
KERNELS = ("log_index", "quorum", "batch", "codec", "text")


def generate_protos() -> None:
    """Compile every .proto under protos/dengine/v1 into dengine/v1 (Python + gRPC stubs)."""
    import grpc_tools
    from grpc_tools import protoc  # build requirement

    protos = sorted((PROTO_ROOT / "dengine" / "v1").glob("*.proto"))
    if not protos:
        raise SystemExit("no .proto files found under protos/dengine/v1")
    PROTO_OUT.mkdir(parents=True, exist_ok=True)
    (PROTO_OUT / "__init__.py").write_text('"""Generated protobuf and gRPC stubs (not committed)."""\n')
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + ", ".join(p.name for p in protos))
    generate_etcd_protos(well_known)


def generate_etcd_protos(well_known: Path) -> None:
    """etcd v3's rpc/kv/auth protos (protos/etcd/dengine/etcd/pb/*.proto) into dengine/etcd/pb/
    (Python + gRPC stubs, not committed)."""
    from grpc_tools import protoc

    etcd_root = PROTO_ROOT / "etcd"
    protos = sorted(etcd_root.rglob("*.proto"))
    if not protos:
        return
    out = ROOT / "dengine" / "etcd" / "pb"
    out.mkdir(parents=True, exist_ok=True)
    (out / "__init__.py").write_text('"""Generated etcd v3 protobuf and gRPC stubs (not committed)."""\n')
    args = [
        "grpc_tools.protoc",
        f"-I{etcd_root}",
        f"-I{well_known}",
        f"--python_out={ROOT}",
        f"--pyi_out={ROOT}",
        f"--grpc_python_out={ROOT}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + ", ".join(p.name for p in protos))


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


def extensions() -> list:
    debug = os.environ.get("DENGINE_DEBUG_BUILD") == "1"
    directives = {
        "language_level": "3",
        "boundscheck": debug,
        "wraparound": False,
        "cdivision": True,
        "initializedcheck": debug,
        "embedsignature": True,
    }
    exts = [
        Extension(
            f"dengine._core.{name}",
            [f"dengine/_core/{name}.pyx"],
            extra_compile_args=["-O2"] if not debug else ["-O0", "-g"],
            undef_macros=["NDEBUG"] if debug else [],
        )
        for name in KERNELS
    ]
    return cythonize(exts, compiler_directives=directives, quiet=True)


# Generate the stubs up front as well, so that package discovery and editable installs see them.
generate_protos()

setup(
    packages=find_packages(include=["dengine", "dengine.*"]),
    package_data={"dengine._core": ["*.pxd", "*.pyi"], "dengine": ["py.typed"]},
    ext_modules=extensions(),
    cmdclass={"build_py": BuildPyWithProtos},
)
