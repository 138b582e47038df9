"""Shared fixtures: throwaway PostgreSQL (two shard databases per test) and redis-server,
SQLite shards in a temporary directory, and engines over either."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from engine.service.context import EngineContext
from tests.support.engines import ThreadEngine, make_context
from tests.support.servers import PostgresServer, RedisServer

_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_shard_urls(postgres: PostgresServer) -> list[str]:
    number = next(_database_numbers)
    return [postgres.create_database(f"test{number}_shard{index}") for index in range(2)]


@pytest.fixture
def sqlite_shard_urls(tmp_path: object) -> list[str]:
    return [f"sqlite:///{tmp_path}/shard{index}.db" for index in range(2)]


@pytest.fixture(params=["postgresql", "sqlite"])
def shard_urls(request: pytest.FixtureRequest) -> list[str]:
    name = "pg_shard_urls" if request.param == "postgresql" else "sqlite_shard_urls"
    urls: list[str] = request.getfixturevalue(name)
    return urls


@pytest.fixture
def engine_context(shard_urls: list[str]) -> Iterator[EngineContext]:
    context = make_context(shard_urls)
    try:
        yield context
    finally:
        context.router.dispose()


@pytest.fixture
def pg_context(pg_shard_urls: list[str]) -> Iterator[EngineContext]:
    context = make_context(pg_shard_urls)
    try:
        yield context
    finally:
        context.router.dispose()


@pytest.fixture
def grpc_engine(shard_urls: list[str]) -> Iterator[ThreadEngine]:
    from engine.config import Settings

    engine = ThreadEngine(Settings(shards=tuple(shard_urls)))
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def pg_grpc_engine(pg_shard_urls: list[str]) -> Iterator[ThreadEngine]:
    from engine.config import Settings

    engine = ThreadEngine(Settings(shards=tuple(pg_shard_urls)))
    try:
        yield engine
    finally:
        engine.stop()
