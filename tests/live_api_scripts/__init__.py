"""StrongDM's public example programs (github.com/strongdm/strongdm-sdk-python-examples,
Apache-2.0, Copyright StrongDM Inc.), each adapted only where it builds its client, so that
`tests/test_live_api_scripts.py` can run them unchanged against the emulator.

Each module keeps its example's body in `main(client)` and, run as a script, builds the
client from `SDM_API_ACCESS_KEY`, `SDM_API_SECRET_KEY` and `SDM_API_HOST` (plaintext when
`SDM_API_INSECURE=1`, as the emulator serves): that is the only change from the example.
"""

from __future__ import annotations

import os
from typing import Any


def client_from_env() -> Any:
    """The one change from the examples: the host (and plaintext) come from the environment."""
    import strongdm

    return strongdm.Client(
        os.getenv("SDM_API_ACCESS_KEY"),
        os.getenv("SDM_API_SECRET_KEY"),
        host=os.getenv("SDM_API_HOST", "app.strongdm.com:443"),
        insecure=os.getenv("SDM_API_INSECURE") == "1",
    )
