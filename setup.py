"""Build steps that pyproject.toml cannot express: Cython kernels and gRPC stubs.

The Python stubs for `proto/quorum/v1/*.proto` are generated here, next to the .proto files,
so that `quorum.v1.inference_pb2` imports from the same path as the proto package. They are
build output and are not committed.
"""

from pathlib import Path
from typing import ClassVar

import numpy
from Cython.Build import cythonize
from setuptools import Command, Extension, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"


def generate_stubs() -> None:
    """Run grpcio-tools' protoc on every .proto file under proto/quorum."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    sources = sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={PROTO_ROOT}",
        f"--pyi_out={PROTO_ROOT}",
        f"--grpc_python_out={PROTO_ROOT}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(sources)}")


class BuildProto(Command):
    description = "generate the gRPC Python stubs from proto/"
    user_options: ClassVar[list] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        generate_stubs()


class BuildPyWithProto(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


class DevelopWithProto(develop):
    def run(self) -> None:
        generate_stubs()
        super().run()


def fastpath_extensions() -> list[Extension]:
    extensions = [
        Extension(
            f"fastpath.{path.stem}",
            [str(path.relative_to(ROOT))],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            extra_compile_args=["-O3"],
        )
        for path in sorted((ROOT / "fastpath").glob("*.pyx"))
    ]
    return cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


setup(
    ext_modules=fastpath_extensions(),
    cmdclass={
        "build_proto": BuildProto,
        "build_py": BuildPyWithProto,
        "develop": DevelopWithProto,
    },
)
