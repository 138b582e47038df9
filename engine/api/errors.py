"""CofferError -> gRPC status with ``google.rpc.ErrorInfo`` (and ``BadRequest``) details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from engine.domain.errors import CofferError

ERROR_DOMAIN = "coffer"


def to_status(error: CofferError) -> grpc.Status:
    code = getattr(code_pb2, error.reason.code.value)
    details = []
    info = error_details_pb2.ErrorInfo(
        reason=error.reason.label, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if error.field_violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in error.field_violations.items()
            ]
        )
        packed_bad_request = any_pb2.Any()
        packed_bad_request.Pack(bad_request)
        details.append(packed_bad_request)
    status = status_pb2.Status(code=code, message=error.message, details=details)
    converted: grpc.Status = rpc_status.to_status(status)
    return converted
