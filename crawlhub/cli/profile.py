"""Where client commands find their CrawlHub and token, first found first:

1. `--url` / `--token` (or `CRAWLHUB_URL` / `CRAWLHUB_TOKEN`);
2. what `crawlhub login URL` stored in the user's config directory
   (`$XDG_CONFIG_HOME/crawlhub/config.json`, else `~/.config/crawlhub/config.json`, mode 0600);
3. the embedded instance on this machine: `http://127.0.0.1:$PORT` (8000) with the token in
   its data dir (`$CRAWLHUB_DATA_DIR`, default `./crawlhub-data`, file `api-token`).

Standard library only: every client command reads this.
"""

import json
import os
import tempfile
from pathlib import Path

TOKEN_FILE = "api-token"  # noqa: S105 (a file name: as crawlhub.config.token_path names it)


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "crawlhub" / "config.json"


def stored() -> dict[str, str]:
    """What `crawlhub login` saved ({} when nothing or unreadable)."""
    try:
        data = json.loads(config_file().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def save(url: str, token: str) -> Path:
    """Store the URL and token for this user, readable by no one else."""
    path = config_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=".config-")  # created 0600
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "token": token}, out)
    os.replace(partial, path)
    return path


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The URL and token a client command uses."""
    saved = stored()
    if not url:
        url = saved.get("url") or f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
    if not token and saved.get("url", "").rstrip("/") == url.rstrip("/"):
        token = saved.get("token")
    if not token:
        data_dir = Path(os.environ.get("CRAWLHUB_DATA_DIR") or "crawlhub-data").expanduser()
        try:
            token = (data_dir / TOKEN_FILE).read_text().strip() or None
        except OSError:
            token = None
    return url, token
