"""Marketing activities (copied to every shard) and the once-per-user grant record."""

from __future__ import annotations

import json

from sqlalchemy import Connection, select

from engine.domain.coupons.definitions import Activity, ActivityReward, ActivityRules
from engine.storage.dialect import insert_or_ignore
from engine.storage.json_columns import dump_json
from engine.storage.schema import activities, activity_grants

__all__ = ["claim_activity_grant", "insert_activity", "read_activity"]


def insert_activity(connection: Connection, activity: Activity, now_us: int) -> bool:
    rules = activity.rules
    return insert_or_ignore(
        connection,
        activities,
        {
            "activity_id": activity.activity_id,
            "name": activity.name,
            "rewards": dump_json(
                [
                    {
                        "template_id": reward.template_id,
                        "quantity": reward.quantity,
                        "points": reward.points,
                        "points_ttl_days": reward.points_ttl_days,
                    }
                    for reward in activity.rewards
                ]
            ),
            "rules": dump_json(
                {
                    "device_blacklist": list(rules.device_blacklist),
                    "ip_cities": list(rules.ip_cities),
                    "new_users_only": rules.new_users_only,
                    "min_member_level": rules.min_member_level,
                    "phone_blacklist": list(rules.phone_blacklist),
                }
            ),
            "valid_from_us": activity.valid_from_us,
            "valid_until_us": activity.valid_until_us,
            "created_at_us": now_us,
        },
    )


def read_activity(connection: Connection, activity_id: str) -> Activity | None:
    row = connection.execute(select(activities).where(activities.c.activity_id == activity_id)).one_or_none()
    if row is None:
        return None
    rules = json.loads(row.rules)
    return Activity(
        activity_id=row.activity_id,
        name=row.name,
        rewards=tuple(
            ActivityReward(
                template_id=reward["template_id"],
                quantity=int(reward["quantity"]),
                points=int(reward["points"]),
                points_ttl_days=int(reward["points_ttl_days"]),
            )
            for reward in json.loads(row.rewards)
        ),
        rules=ActivityRules(
            device_blacklist=tuple(rules["device_blacklist"]),
            ip_cities=tuple(rules["ip_cities"]),
            new_users_only=bool(rules["new_users_only"]),
            min_member_level=int(rules["min_member_level"]),
            phone_blacklist=tuple(rules["phone_blacklist"]),
        ),
        valid_from_us=row.valid_from_us,
        valid_until_us=row.valid_until_us,
    )


def claim_activity_grant(
    connection: Connection, user_id: int, activity_id: str, transaction_id: str, now_us: int
) -> bool:
    """Record the one grant of ``activity_id`` to ``user_id``; False when it was granted before.

    On PostgreSQL a concurrent grant still in flight makes this wait for it (the primary key),
    so twenty simultaneous requests end in one bundle and nineteen refusals.
    """
    return insert_or_ignore(
        connection,
        activity_grants,
        {
            "user_id": user_id,
            "activity_id": activity_id,
            "transaction_id": transaction_id,
            "created_at_us": now_us,
        },
    )
