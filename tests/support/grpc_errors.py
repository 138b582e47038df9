"""Reading coffer's rich error details off a failed gRPC call, as a client would."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    reason: str
    domain: str
    metadata: dict[str, str]
    field_violations: dict[str, str]


def details_of(error: grpc.RpcError) -> ErrorDetails:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    violations: dict[str, str] = {}
    reason = domain = ""
    metadata: dict[str, str] = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad_request)
            violations = {item.field: item.description for item in bad_request.field_violations}
    return ErrorDetails(error.code(), reason, domain, metadata, violations)  # type: ignore[attr-defined]
