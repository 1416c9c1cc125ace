"""`sdm-async` (also `python -m sdm_async`): every service of the API, the emulator, the demo
and provisioning. Only what a command needs is imported, so that `--help` and `emulator`
start fast."""

from __future__ import annotations

import sys

USAGE = """usage: sdm-async COMMAND [options]
       sdm-async SERVICE METHOD [ARGS...] [-o table|json|yaml|csv] [--fields a,b,c]

commands:
  emulator   serve a local emulator of the StrongDM API (see `sdm-async emulator --help`)
  demo       provision and read back an organisation on an embedded emulator
  provision  plan, apply or export a YAML declaration (`sdm-async provision --help`)
  SERVICE    call the API: `sdm-async accounts list 'email:?' alice@example.com`,
             `sdm-async roles get r-123` (`sdm-async SERVICE --help` lists its methods;
             credentials from SDM_API_ACCESS_KEY, SDM_API_SECRET_KEY, SDM_API_HOST)

services (Python names; dashes are accepted too: account-grants):
"""


def _usage() -> str:
    import textwrap

    from sdm_async.commands import service_names

    names = ", ".join(service_names())
    return USAGE + textwrap.fill(
        names, 96, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        if args:
            print(_usage())
            return 0
        print(_usage(), file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command == "emulator":
        from sdm_async.testing.cli import main as emulator_main

        return emulator_main(rest)
    if command == "demo":
        from sdm_async.demo import main as demo_main

        return demo_main(rest)
    if command == "provision":
        from sdm_async.provision.cli import main as provision_main

        return provision_main(rest)
    from sdm_async.commands import main as service_main

    return service_main(args)
