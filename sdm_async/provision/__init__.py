"""Provisioning: make an organisation match a YAML declaration, idempotently.

    spec = sdm_async.provision.load("org.yaml")          # validated offline
    plan = await sdm_async.provision.plan(client, spec)  # reads only
    print(plan.summary())
    result = await sdm_async.provision.apply(client, spec, prune=False)

The declaration names users, services, roles, resources, nodes, attachments and grants;
objects refer to each other by natural key (email, name). Objects this package creates carry
the tag `managed-by: <owner>` (the file's `owner:`, `sdm-async` by default); only those are
deleted, and only with `prune`. An object marked by another owner is a conflict, unless
`take_over` names that owner. Only the attributes the file states are compared and written.
The one-time tokens of created services and nodes are in `result.tokens`.
`await sdm_async.provision.export(client, owner="team")` writes an organisation as a
declaration (YAML text) to adopt it. The command line is `sdm-async provision plan|apply FILE`
and `sdm-async provision export [-o FILE]`. See `examples/provision/org.yaml`.
"""

import sys
import types
import typing

from sdm_async._lazy import attach

if typing.TYPE_CHECKING:
    from sdm_async.provision.apply import ConflictError, Failure, Result, Tokens, apply
    from sdm_async.provision.diff import Change, Plan, diff, plan
    from sdm_async.provision.export import export
    from sdm_async.provision.kinds import MARK_KEY, MARK_VALUE
    from sdm_async.provision.org import Org, read
    from sdm_async.provision.spec import Declared, Problem, Spec, SpecError, load, parse

__all__ = [
    "MARK_KEY",
    "MARK_VALUE",
    "Change",
    "ConflictError",
    "Declared",
    "Failure",
    "Org",
    "Plan",
    "Problem",
    "Result",
    "Spec",
    "SpecError",
    "Tokens",
    "apply",
    "diff",
    "export",
    "load",
    "parse",
    "plan",
    "read",
]

# name -> the module that defines it, imported on first use of the name (so that the command
# line's `--help` does not load the client, YAML and rich)
_LAZY = {
    "MARK_KEY": "kinds",
    "MARK_VALUE": "kinds",
    "Change": "diff",
    "ConflictError": "apply",
    "Declared": "spec",
    "Failure": "apply",
    "Org": "org",
    "Plan": "diff",
    "Problem": "spec",
    "Result": "apply",
    "Spec": "spec",
    "SpecError": "spec",
    "Tokens": "apply",
    "apply": "apply",
    "diff": "diff",
    "export": "export",
    "load": "spec",
    "parse": "spec",
    "plan": "diff",
    "read": "org",
}

__getattr__, __dir__ = attach(__name__, _LAZY, globals())


class _Package(types.ModuleType):
    """Importing a submodule binds it on its package, which would hide the functions `apply`,
    `diff` and `export` behind their modules of the same name: those bindings are dropped
    (the modules stay in sys.modules), so that the names load the functions."""

    def __setattr__(self, name: str, value: object) -> None:
        if _LAZY.get(name) == name and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
