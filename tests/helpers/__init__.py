"""What more than one test module needs, grouped by concept (tiny models, decoders, the hub, the config, result
files, running the project's commands). Test modules import from here, never from each other; the fixtures
they share are in conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# .ci/run sets TRANSMOD_CI=1 after starting the cluster and installing Chromium: what CI provides must be
# there, so that its tests fail instead of being skipped in silence.
REQUIRED_ON_CI = os.environ.get("TRANSMOD_CI") == "1"
