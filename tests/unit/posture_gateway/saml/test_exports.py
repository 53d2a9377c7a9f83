"""Every public module of the SAML protocol layer declares ``__all__``, and it names exactly
the public things the module defines (so the documented API is the importable one)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import posture_gateway.saml.protocol as protocol


def test_all_matches_public_definitions() -> None:
    for info in pkgutil.iter_modules(protocol.__path__):
        module = importlib.import_module(f"{protocol.__name__}.{info.name}")
        assert module.__doc__, f"{info.name} has no module docstring"
        exported = set(getattr(module, "__all__", ()))
        assert exported, f"{info.name} declares no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"
        defined = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and getattr(value, "__module__", None) == module.__name__
        }
        assert defined <= exported, f"{info.name}: public but not in __all__: {defined - exported}"
