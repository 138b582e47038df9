"""Generate docs/api.md, the API reference, from the comments in protos/coffer/v1/*.proto.

The protos are the one source of truth: every service, rpc, message, field and enum value carries
a leading comment, and an rpc's comment ends with a line in the fixed form

    Roles: order_service, pos (own merchant)

naming the caller roles that may call it (each optionally qualified in parentheses). The error
reasons come from the ErrorReason enum through scripts/gen_reasons.py's reader, so their codes and
meanings are read once. ``make proto`` writes docs/api.md; ``make proto-check`` writes it into a
temporary directory (``--out-dir``) and fails when the committed file differs.

    python scripts/gen_api_docs.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

# Run as a script (``python scripts/gen_api_docs.py``) or imported as ``scripts.gen_api_docs``.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts._proto_source import (
    PROTO_ROOT,
    REPOSITORY,
    ProtoCompileError,
    compile_descriptor_set,
    leading_comments,
    write_generated,
)
from scripts.gen_reasons import ENUM_NAME, GenerationError, ReasonSpec, read_reasons

API_DOC = Path("docs/api.md")
PACKAGE_DIR = "coffer/v1"
#: The caller roles of the security model; a Roles line naming another is a typo.
KNOWN_ROLES = ("order_service", "pos", "payment_callback", "ops", "auditor")
ROLES_PREFIX = "Roles:"
_ROLE = re.compile(r"^(?P<role>[a-z_]+)(?: \((?P<qualifier>[^()]+)\))?$")

#: descriptor.proto field numbers used in SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

_SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in descriptor_pb2.FieldDescriptorProto.Type.items()
}


@dataclass(frozen=True)
class Role:
    name: str
    qualifier: str

    def render(self) -> str:
        return f"`{self.name}`" + (f" ({self.qualifier})" if self.qualifier else "")


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    request: str
    response: str
    comment: tuple[str, ...]
    #: Empty when the comment has no Roles line (tests/unit/test_api_docs.py refuses that).
    roles: tuple[Role, ...]


def _split_roles(text: str) -> list[str]:
    """``a, b (x, y), c`` -> ``["a", "b (x, y)", "c"]``: commas inside parentheses stay."""
    parts: list[str] = []
    depth = 0
    current = ""
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += character
    parts.append(current.strip())
    return [part for part in parts if part]


def parse_roles(comment: tuple[str, ...], where: str) -> tuple[tuple[str, ...], tuple[Role, ...]]:
    """The comment without its Roles line, and the roles that line names."""
    lines = [line for line in comment if not line.startswith(ROLES_PREFIX)]
    role_lines = [line for line in comment if line.startswith(ROLES_PREFIX)]
    if len(role_lines) > 1:
        raise GenerationError(f"{where}: more than one {ROLES_PREFIX} line")
    roles: list[Role] = []
    for item in _split_roles(role_lines[0].removeprefix(ROLES_PREFIX)) if role_lines else []:
        match = _ROLE.match(item)
        if match is None or match["role"] not in KNOWN_ROLES:
            raise GenerationError(f"{where}: {item!r} is not one of {', '.join(KNOWN_ROLES)} (qualifier)")
        roles.append(Role(match["role"], match["qualifier"] or ""))
    return tuple(lines), tuple(roles)


def proto_files() -> list[str]:
    return sorted(f"{PACKAGE_DIR}/{path.name}" for path in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def _anchor(kind: str, full_name: str) -> str:
    return f"{kind}-{full_name.lstrip('.').replace('.', '-').lower()}"


def _type_link(type_name: str, package: str) -> str:
    full = type_name.lstrip(".")
    if full.startswith(package + "."):
        short = full.removeprefix(package + ".")
        return f"[`{short}`](#{_anchor('type', full)})"
    return f"`{full}`"


def _text(comment: tuple[str, ...]) -> str:
    return " ".join(line for line in comment if line) or "—"


def _cell(comment: tuple[str, ...]) -> str:
    return _text(comment).replace("|", "\\|")


class _Renderer:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto], reasons: list[ReasonSpec]) -> None:
        self.files = files
        self.reasons = reasons
        self.lines: list[str] = []

    def out(self, *lines: str) -> None:
        self.lines.extend(lines)

    def rpcs(self) -> list[Rpc]:
        found: list[Rpc] = []
        for file in self.files:
            comments = leading_comments(file)
            for s_index, service in enumerate(file.service):
                for m_index, method in enumerate(service.method):
                    where = f"{service.name}.{method.name}"
                    raw = comments.get((_FILE_SERVICE, s_index, _SERVICE_METHOD, m_index), ())
                    comment, roles = parse_roles(raw, where)
                    found.append(
                        Rpc(
                            service.name,
                            method.name,
                            method.input_type,
                            method.output_type,
                            comment,
                            roles,
                        )
                    )
        return found

    def render(self) -> str:
        self.out(
            "# coffer API reference",
            "",
            "GENERATED by `scripts/gen_api_docs.py` from the comments in `protos/coffer/v1/*.proto`; do not",
            "edit: change the protos and run `make proto` (`make proto-check` fails when this is stale).",
            "",
            "## Conventions",
            "",
            "- **Units.** Every amount is an `int64` count of minor units: money in **fen** (1 CNY = 100",
            "  fen), points in points, coins in coins (1 point = 1 coin = 1 fen by default). There are no",
            "  floats. Rates and shares are integer basis points (**bps**): `discount_bps = 2000` is 20%.",
            "  One request moves at most 10^13 fen and no balance passes 2^62 (AMOUNT_LIMIT_EXCEEDED).",
            "- **Times** are `google.protobuf.Timestamp`.",
            "- **Idempotency.** Every mutation carries an `idempotency_key` (1–128 characters of",
            "  `[A-Za-z0-9._:-]`). The same key with the same payload (every field but `context`) returns",
            "  the stored answer with `replayed = true`; with another payload it is IDEMPOTENCY_KEY_REUSED.",
            "- **Enums.** An `_UNSPECIFIED` value in a request is INVALID_ARGUMENT unless a field says",
            "  otherwise.",
            "- **Limits.** At most 200 items, 5 coupons and 5 gift cards per charge; page size at most 200",
            "  (default 50).",
            "- **Errors.** A refusal is a gRPC status with a `google.rpc.ErrorInfo` detail (`domain =",
            '  "coffer"`, `reason` one of the [error reasons](#error-reasons), `metadata` naming the field,',
            "  asset or ids) and, for bad fields, a `BadRequest` detail.",
            "- **Roles.** Each RPC names the caller roles that may call it: `order_service`, `pos` (its own",
            "  merchant where noted), `payment_callback`, `ops`, `auditor`. A wrong role or merchant is",
            "  ROLE_FORBIDDEN, missing credentials UNAUTHENTICATED. The roles are enforced once callers",
            "  carry identities (the security work); until then every caller may call every RPC.",
            "",
        )
        self._services()
        self._health()
        self._messages()
        self._enums()
        self._reasons()
        return "\n".join(self.lines).rstrip("\n") + "\n"

    def _services(self) -> None:
        rpcs = self.rpcs()
        self.out("## Services", "")
        for file in self.files:
            comments = leading_comments(file)
            for s_index, service in enumerate(file.service):
                full = f"{file.package}.{service.name}"
                self.out(
                    f'<a id="{_anchor("service", full)}"></a>',
                    f"### service `{full}`",
                    "",
                    f"Defined in `protos/{file.name}`. {_text(comments.get((_FILE_SERVICE, s_index), ()))}",
                    "",
                    "| RPC | Request | Response | Roles |",
                    "|---|---|---|---|",
                )
                mine = [rpc for rpc in rpcs if rpc.service == service.name]
                for rpc in mine:
                    self.out(
                        f"| [`{rpc.name}`](#{_anchor('rpc', f'{full}.{rpc.name}')}) "
                        f"| {_type_link(rpc.request, file.package)} "
                        f"| {_type_link(rpc.response, file.package)} "
                        f"| {', '.join(role.render() for role in rpc.roles) or '—'} |"
                    )
                self.out("")
                for rpc in mine:
                    self.out(
                        f'<a id="{_anchor("rpc", f"{full}.{rpc.name}")}"></a>',
                        f"#### `{service.name}.{rpc.name}`",
                        "",
                        f"`rpc {rpc.name}({rpc.request.lstrip('.')}) returns ({rpc.response.lstrip('.')})`",
                        "",
                        f"{ROLES_PREFIX} {', '.join(role.render() for role in rpc.roles) or '(not stated)'}",
                        "",
                        _text(rpc.comment),
                        "",
                    )

    def _health(self) -> None:
        self.out(
            "### `grpc.health.v1.Health` and server reflection",
            "",
            f"{ROLES_PREFIX} any caller (no credentials needed).",
            "",
            "The engine also serves the standard `grpc.health.v1.Health` service (`Check` and `Watch`;",
            'the overall service `""`, `coffer.v1.TransactionEngine` and `coffer.v1.Admin` report',
            "NOT_SERVING until every shard has answered at start-up, SERVING then, NOT_SERVING again while",
            "shutting down) and gRPC server reflection, so generic tools can list the services above. Their",
            "messages are the standard ones and are not repeated here.",
            "",
        )

    def _messages(self) -> None:
        self.out("## Messages", "")
        for file in self.files:
            comments = leading_comments(file)
            for index, message in enumerate(file.message_type):
                self._message(file, comments, message, (_FILE_MESSAGE, index), file.package)

    def _message(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        comments: dict[tuple[int, ...], tuple[str, ...]],
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        scope: str,
    ) -> None:
        full = f"{scope}.{message.name}"
        self.out(
            f'<a id="{_anchor("type", full)}"></a>',
            f"### `{full.removeprefix(file.package + '.')}`",
            "",
            f"Defined in `protos/{file.name}`. {_text(comments.get(path, ()))}",
            "",
        )
        if message.field:
            self.out("| Field | Number | Type | Description |", "|---|---|---|---|")
        for index, field in enumerate(message.field):
            label = descriptor_pb2.FieldDescriptorProto.Label
            kind = (
                _type_link(field.type_name, file.package) if field.type_name else f"`{_SCALARS[field.type]}`"
            )
            if field.label == label.LABEL_REPEATED:
                kind = f"repeated {kind}"
            elif field.proto3_optional:
                kind = f"optional {kind}"
            note = ""
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneof = message.oneof_decl[field.oneof_index].name
                note = f" (one of `{oneof}`)"
            description = _cell(comments.get((*path, _MESSAGE_FIELD, index), ()))
            self.out(f"| `{field.name}` | {field.number} | {kind} | {description}{note} |")
        self.out("")
        for index, nested in enumerate(message.nested_type):
            if not nested.options.map_entry:
                self._message(file, comments, nested, (*path, _MESSAGE_NESTED, index), full)
        for index, enum in enumerate(message.enum_type):
            self._enum(file, comments, enum, (*path, _MESSAGE_ENUM, index), full)

    def _enums(self) -> None:
        self.out("## Enums", "")
        for file in self.files:
            comments = leading_comments(file)
            for index, enum in enumerate(file.enum_type):
                if f"{file.package}.{enum.name}" == ENUM_NAME:
                    continue  # its own section below, with each reason's status code
                self._enum(file, comments, enum, (_FILE_ENUM, index), file.package)

    def _enum(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        comments: dict[tuple[int, ...], tuple[str, ...]],
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        scope: str,
    ) -> None:
        full = f"{scope}.{enum.name}"
        self.out(
            f'<a id="{_anchor("type", full)}"></a>',
            f"### enum `{full.removeprefix(file.package + '.')}`",
            "",
            f"Defined in `protos/{file.name}`. {_text(comments.get(path, ()))}",
            "",
            "| Value | Number | Description |",
            "|---|---|---|",
        )
        for index, value in enumerate(enum.value):
            description = _cell(comments.get((*path, _ENUM_VALUE, index), ()))
            self.out(f"| `{value.name}` | {value.number} | {description} |")
        self.out("")

    def _reasons(self) -> None:
        self.out(
            "## Error reasons",
            "",
            f'<a id="{_anchor("type", ENUM_NAME)}"></a>',
            f"The `{ENUM_NAME}` enum (`protos/{PACKAGE_DIR}/common.proto`): a refusal's",
            "`ErrorInfo.reason` is one of these names (the numbers never travel; the zero value",
            "`ERROR_REASON_UNSPECIFIED` is never sent). A client meeting a reason it does not know treats",
            "it by its status code.",
            "",
            "| Reason | gRPC status | Meaning |",
            "|---|---|---|",
        )
        for reason in self.reasons:
            self.out(f"| `{reason.name}` | {reason.code} | {_cell(reason.comment)} |")
        self.out("")


def _ordered(descriptors: descriptor_pb2.FileDescriptorSet) -> list[descriptor_pb2.FileDescriptorProto]:
    """The package's files: those declaring services first (by name), then the others."""
    ours = [file for file in descriptors.file if file.name.startswith(PACKAGE_DIR + "/")]
    return sorted(ours, key=lambda file: (not file.service, file.name))


def read_rpcs() -> list[Rpc]:
    """Every rpc of the protos with its comment and roles (for tests)."""
    return _Renderer(_ordered(compile_descriptor_set(proto_files())), []).rpcs()


def render_api_doc() -> str:
    files = _ordered(compile_descriptor_set(proto_files()))
    return _Renderer(files, read_reasons()).render()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPOSITORY, help="write under this directory")
    args = parser.parse_args(argv)
    try:
        text = render_api_doc()
    except (GenerationError, ProtoCompileError) as error:
        print(f"gen_api_docs: {error}", file=sys.stderr)
        return 1
    write_generated(args.out_dir / API_DOC, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
