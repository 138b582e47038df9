"""The coffer protos compiled with their comments, for the generators in scripts/.

``protoc`` (grpc_tools) writes a ``FileDescriptorSet`` with ``--include_source_info``, so every
leading comment comes along; :func:`leading_comments` maps each element's source path (the
``SourceCodeInfo`` path: field numbers of descriptor.proto and indexes) to its comment lines.
scripts/gen_reasons.py and scripts/gen_api_docs.py both read the protos through this module.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

__all__ = [
    "PROTO_ROOT",
    "REPOSITORY",
    "ProtoCompileError",
    "compile_descriptor_set",
    "leading_comments",
    "write_generated",
]

REPOSITORY = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPOSITORY / "protos"


class ProtoCompileError(Exception):
    """protoc refused the protos."""


def compile_descriptor_set(proto_files: list[str]) -> descriptor_pb2.FileDescriptorSet:
    """``proto_files`` (relative to protos/) and their imports, with source info."""
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "protos.pb"
        status = protoc.main(
            [
                "protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *(str(PROTO_ROOT / name) for name in proto_files),
            ]
        )
        if status != 0:
            raise ProtoCompileError(f"protoc failed on {', '.join(proto_files)} ({status})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def leading_comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], tuple[str, ...]]:
    """Source path -> the lines of the element's leading comment (stripped), for every element
    that has one."""
    found: dict[tuple[int, ...], tuple[str, ...]] = {}
    for location in file.source_code_info.location:
        text = location.leading_comments.strip()
        if text:
            found[tuple(location.path)] = tuple(line.strip() for line in text.splitlines())
    return found


def write_generated(target: Path, text: str) -> None:
    """Write-then-rename: an interrupted run never leaves a half-written generated file behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, target)
