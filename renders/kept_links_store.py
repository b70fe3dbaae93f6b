"""The open share links each worker process keeps (see renders/public/kept_links.py), and the call every change
that can close a link makes once written: a share's revocation, a render's deletion."""

from apikeys.keycache import LOCAL_MAX_ENTRIES, LOCAL_TTL_SECONDS, keys_changed
from engagement_platform.kept import KeptByEpoch

local_links: KeptByEpoch = KeptByEpoch(ttl_seconds=LOCAL_TTL_SECONDS, max_entries=LOCAL_MAX_ENTRIES)


def links_changed() -> None:
    """Every worker looks its kept links up again: the keys epoch is replaced now and once the change commits."""
    local_links.clear()
    keys_changed()
