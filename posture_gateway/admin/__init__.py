"""Named admins of the gateway and what they may do: principals and roles
(:mod:`.principals`), per-admin API tokens (:mod:`.tokens`), their SQL store (:mod:`.store`),
the service that adds, disables and rotates them (:mod:`.service`), the guard every admin
blueprint runs (:mod:`.guard`) and the device administration API (:mod:`.devices_api`).

See ``docs/device-admin.md``.
"""

__all__: list[str] = []
