"""The gRPC adapter: proto -> command -> use case -> result -> proto. No rules live here."""
