"""The suite's environment, set before Django reads its settings (pytest.ini loads this as a plugin, `-p`).

The suite runs with DEBUG off, as production does, and the settings then refuse to start without a
SECRET_KEY: the run gets a random one of its own (unless the environment has one), which every server and
command the tests start inherits.
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# Webhook receivers in the suite are local http servers (contract section 8: set by tests and `make run`).
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "1")
