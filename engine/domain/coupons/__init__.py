"""Coupons in the pure domain: template rules and discount arithmetic (:mod:`.rules`), the
best-combination search (:mod:`.search`), the user-coupon state machine (:mod:`.states`),
template and activity definitions with their validation (:mod:`.definitions`) and the commands
and results of the coupon use cases (:mod:`.messages`). No I/O here; docs/coupons.md explains
the design."""
