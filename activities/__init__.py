"""The platform's activities: thin adapters to the outside world (the database, the outbox, the
key store), split by concern, one class per module. They know nothing about steps.

- decisions.py: may this person take this decision (the roster, the applicant's contacts, four
  eyes); a local activity.
- catalogue.py, contracts.py: what the catalogue and the contracts on record say; local.
- admission.py: `admit_application`, an application's input by the rules of submission; local.
- records.py: `write_record`, the one commit of a process's journal, and `commit_decision`, the
  same commit verifying first the decision it carries; local activities, run as regular ones
  when they cannot finish within a workflow task's minute (workflows/process.py, `_committed`).
- reconciliation.py: `reconcile_keys`, the keys of processes that closed without reaching
  production revoked (the key-reconciliation schedule); it asks Temporal, so takes the client.
- legacy.py: stop 8's activities, for applications started before v2.
- interceptors.py: failed attempts on the audit log, heartbeats.

`platform_activities` registers every @activity.defn method of every activity class in these
modules, found by looking: there is no list to forget a new activity from.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio.client import Client

from onboarding.core.config import Settings


def activity_classes() -> list[type]:
    """Every class defined in a module of this package that has an @activity.defn method."""
    found = []
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and _activity_methods(cls):
                found.append(cls)
    return found


def platform_activities(pool: asyncpg.Pool, settings: Settings,
                        client: Client | None = None) -> list[Callable[..., Any]]:
    """The activities a worker registers: each class made with the worker's pool and settings,
    and its Temporal client for a class that asks Temporal (it takes `client`)."""
    made = [cls(pool, settings, client=client)
            if "client" in inspect.signature(cls).parameters else cls(pool, settings)
            for cls in activity_classes()]
    return [getattr(instance, name) for instance in made
            for name in _activity_methods(type(instance))]


def _activity_methods(cls: type) -> list[str]:
    return [name for name, member in inspect.getmembers(cls)
            if hasattr(member, "__temporal_activity_definition")]
