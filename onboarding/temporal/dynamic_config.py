"""Temporal's dynamic config for the platform's namespace: the limits that protect applications
from clients that reach Temporal directly (README, "What the platform guarantees whatever client
reaches Temporal"). One list, used by `make up` and the tests' dev servers
(`--dynamic-config-value`), and written out for docker-compose's Temporal
(deploy/temporal/dynamicconfig/onboarding.yaml, checked against this by tests/test_compose.py).

- `limit.blobSize.error`, 1 MiB (Temporal's default: 2 MiB). Every payload is held to it: a
  signal or a start above it is refused by the server before any workflow sees it. The
  platform's own largest payloads stay under it with room, which tests/test_bounds.py proves
  (a publication's input with a 512 KiB document, the state a run carries, the largest
  commit); a workflow writing a larger one would be terminated (Temporal 1.27) or stuck
  (1.30 on): the limit may not be lower than that bound. An update above it is not refused by
  the server and wedges the workflow: the reviewer CLI refuses oversized decisions before
  Temporal, raw clients remain a risk (README).
- `history.maximumSignalsPerExecution`, 2,000 (Temporal's default: 10,000). A run cannot end
  while signals keep arriving, so during a flood the signals of one run are bounded only by
  this; the worker then handles them all in one workflow task, which must finish within the
  SDK's deadlock timeout of 2 s (10,000 refusals take about 1.2 s on a quiet core). An
  application continues as new long before (ProcessLimits.signals_per_run is at most 1,500).
"""

from __future__ import annotations

BLOB_SIZE_ERROR = 1024 * 1024
SIGNALS_PER_RUN = 2_000

VALUES: dict[str, int] = {
    "limit.blobSize.error": BLOB_SIZE_ERROR,
    "limit.blobSize.warn": 512 * 1024,
    "history.maximumSignalsPerExecution": SIGNALS_PER_RUN,
}


def dev_server_args() -> list[str]:
    """The values as `temporal server start-dev` takes them."""
    return [arg for key, value in VALUES.items()
            for arg in ("--dynamic-config-value", f"{key}={value}")]
