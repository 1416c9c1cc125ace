"""`sdm-async` (also `python -m sdm_async`): the emulator and the demo."""

from __future__ import annotations

import sys

USAGE = """usage: sdm-async COMMAND [options]

commands:
  emulator   serve a local emulator of the StrongDM API (see `sdm-async emulator --help`)
  demo       provision and read back an organisation on an embedded emulator
  provision  plan or apply a YAML declaration of an organisation (`sdm-async provision --help`)
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
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
    print(f"sdm-async: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
