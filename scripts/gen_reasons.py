"""Generate the Python views of the ``ErrorReason`` enum from protos/coffer/v1/common.proto.

CONTRACT §1 publishes the error reasons once, as ``ErrorReason`` in ``common.proto``; each value's
``grpc_code`` option names the status code it travels under and its comment says what it means.
This script reads that enum from the proto descriptor (compiled here with ``--include_source_info``
so the comments come along) and writes two static modules, so type checkers and IDEs see every
name and nobody keeps a second list by hand:

* ``engine/domain/reasons.py``: ``Code`` and ``Reason`` StrEnums (and ``REASON_CODES``). The
  domain layer imports these instead of the generated stubs, so it stays free of protobuf.
* ``clients/_reason_errors.py``: one exception class per reason, under the class of its code.

``make proto`` runs it after the stubs; ``make proto-check`` runs it into a temporary directory
(``--out-dir``) and fails when the committed files differ.

    python scripts/gen_reasons.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

REPOSITORY = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPOSITORY / "protos"
COMMON_PROTO = "coffer/v1/common.proto"
ENUM_NAME = "coffer.v1.ErrorReason"
CODE_OPTION = "coffer.v1.grpc_code"
UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"
ENGINE_MODULE = Path("engine/domain/reasons.py")
CLIENT_MODULE = Path("clients/_reason_errors.py")

#: Every status code a reason may travel under: the client classes are named after them.
KNOWN_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "RESOURCE_EXHAUSTED",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "ABORTED",
        "UNAVAILABLE",
    }
)

#: FileDescriptorProto field numbers (descriptor.proto) for SourceCodeInfo paths.
_FILE_ENUM_TYPE = 5
_ENUM_VALUE = 2


@dataclass(frozen=True)
class ReasonSpec:
    name: str
    code: str
    comment: tuple[str, ...]

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))


class GenerationError(Exception):
    """The enum breaks a rule the generated code relies on."""


def _descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "common.pb"
        status = protoc.main(
            [
                "protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                "--include_imports",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                str(PROTO_ROOT / COMMON_PROTO),
            ]
        )
        if status != 0:
            raise GenerationError(f"protoc failed on {COMMON_PROTO} ({status})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comments(file: descriptor_pb2.FileDescriptorProto, enum_index: int) -> dict[int, tuple[str, ...]]:
    """Value index -> the lines of its leading comment."""
    found: dict[int, tuple[str, ...]] = {}
    for location in file.source_code_info.location:
        path = list(location.path)
        if len(path) == 4 and path[:3] == [_FILE_ENUM_TYPE, enum_index, _ENUM_VALUE]:
            lines = tuple(line.strip() for line in location.leading_comments.strip().splitlines())
            found[path[3]] = lines
    return found


def read_reasons() -> list[ReasonSpec]:
    """The ErrorReason values after the zero value, in declaration order."""
    descriptors = _descriptor_set()
    pool = descriptor_pool.DescriptorPool()
    for file_proto in descriptors.file:
        pool.Add(file_proto)
    code_option = pool.FindExtensionByName(CODE_OPTION)
    # Options parsed by the default pool keep the custom option as an unknown field; re-read them
    # with this pool's EnumValueOptions, which knows the extension.
    options_class = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("google.protobuf.EnumValueOptions")
    )
    enum = pool.FindEnumTypeByName(ENUM_NAME)
    common = next(file for file in descriptors.file if file.name == COMMON_PROTO)
    enum_index = [item.name for item in common.enum_type].index(enum.name)
    comments = _comments(common, enum_index)
    if enum.values[0].name != UNSPECIFIED or enum.values[0].number != 0:
        raise GenerationError(f"the zero value must be {UNSPECIFIED}")
    reasons: list[ReasonSpec] = []
    for index, value in enumerate(enum.values):
        if index == 0:
            continue
        options = options_class.FromString(value.GetOptions().SerializeToString())
        code = str(options.Extensions[code_option])
        if code not in KNOWN_CODES:
            raise GenerationError(f"{value.name}: grpc_code {code!r} is not one of {sorted(KNOWN_CODES)}")
        comment = comments.get(index, ())
        if not comment:
            raise GenerationError(f"{value.name}: every reason needs a comment saying what it means")
        reasons.append(ReasonSpec(value.name, code, comment))
    return reasons


def _codes_in_order(reasons: list[ReasonSpec]) -> list[str]:
    return list(dict.fromkeys(reason.code for reason in reasons))


_HEADER = '''"""{title}

GENERATED by scripts/gen_reasons.py from the ErrorReason enum in protos/coffer/v1/common.proto;
do not edit: change the proto and run `make proto` (`make proto-check` fails when this is stale).
{extra}"""

from __future__ import annotations
'''


def engine_module(reasons: list[ReasonSpec]) -> str:
    lines = [
        _HEADER.format(
            title="CONTRACT §4 error reasons and the gRPC status code each travels under.",
            extra="The domain imports this rather than the protobuf stubs, so it stays free of protobuf.\n",
        ),
        "import enum",
        "from collections.abc import Mapping",
        "from types import MappingProxyType",
        "from typing import Final",
        "",
        "",
        "class Code(enum.StrEnum):",
        '    """gRPC status codes the reasons travel under, by name (the domain does not import grpc)."""',
        "",
    ]
    lines += [f'    {code} = "{code}"' for code in _codes_in_order(reasons)]
    lines += [
        "",
        "",
        "class Reason(enum.StrEnum):",
        '    """Why a call was refused: the ErrorReason values, each equal to its reason string."""',
        "",
    ]
    for reason in reasons:
        lines += [f"    #: {line}".rstrip() for line in reason.comment]
        lines += [f'    {reason.name} = "{reason.name}"', ""]
    lines += [
        "    @property",
        "    def label(self) -> str:",
        '        """The reason string, as sent in ``google.rpc.ErrorInfo.reason``."""',
        "        return str(self.value)",
        "",
        "    @property",
        "    def code(self) -> Code:",
        '        """The gRPC status code this reason travels under."""',
        "        return REASON_CODES[self]",
        "",
        "",
        "#: Reason -> the status code it travels under (the proto's ``grpc_code`` option).",
        "REASON_CODES: Final[Mapping[Reason, Code]] = MappingProxyType(",
        "    {",
    ]
    lines += [f"        Reason.{reason.name}: Code.{reason.code}," for reason in reasons]
    lines += ["    }", ")", ""]
    return "\n".join(lines)


def _code_class(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_")) + "Error"


def client_module(reasons: list[ReasonSpec]) -> str:
    imported = sorted({"CofferError", *(_code_class(code) for code in _codes_in_order(reasons))})
    lines = [
        _HEADER.format(
            title="One exception class per ErrorReason, under the class of the gRPC code it travels with.",
            extra="",
        ),
        "from collections.abc import Mapping",
        "from types import MappingProxyType",
        "from typing import Final",
        "",
        "from clients._status_errors import (",
    ]
    lines += [f"    {name}," for name in imported]
    lines += [")", ""]
    for reason in reasons:
        lines += ["", f"class {reason.class_name}({_code_class(reason.code)}):"]
        lines.append(f'    """``{reason.name}`` (status {reason.code}).')
        lines.append("")
        lines += [f"    {line}".rstrip() for line in reason.comment]
        lines.append('    """')
        lines += ["", f'    reason_name = "{reason.name}"', ""]
    lines += [
        "",
        "#: Reason string -> the class standing for it.",
        "REASON_CLASSES: Final[Mapping[str, type[CofferError]]] = MappingProxyType(",
        "    {",
    ]
    lines += [f"        {reason.class_name}.reason_name: {reason.class_name}," for reason in reasons]
    lines += ["    }", ")", "", "__all__ = ["]
    lines += [f'    "{name}",' for name in ["REASON_CLASSES", *sorted(r.class_name for r in reasons)]]
    lines += ["]", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPOSITORY, help="write under this directory")
    args = parser.parse_args(argv)
    try:
        reasons = read_reasons()
    except GenerationError as error:
        print(f"gen_reasons: {error}", file=sys.stderr)
        return 1
    for relative, text in ((ENGINE_MODULE, engine_module(reasons)), (CLIENT_MODULE, client_module(reasons))):
        target = args.out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: an interrupted run never leaves a half-written module behind.
        scratch = target.with_suffix(".py.tmp")
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
