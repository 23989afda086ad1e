"""Model files from the Hugging Face Hub: ``hf://OWNER/REPO/FILE`` through ``huggingface_hub``'s cache.

``huggingface_hub`` is the optional extra ``airoboros-ggml[hub]``, imported only when a Hub file is asked for.
Files land in (and are found in) its usual cache (``HF_HOME`` / ``HF_HUB_CACHE``), so a second use needs no
network, and with ``HF_HUB_OFFLINE=1`` (or ``offline=True``) only the cache is consulted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..errors import DownloadError
from ..progress import progress_enabled

log = logging.getLogger(__name__)

HF_SCHEME = "hf://"


@dataclasses.dataclass(frozen=True)
class HubFile:
    """A file in a Hub model repository."""

    repo_id: str
    """``OWNER/REPO``."""
    filename: str
    """Path of the file inside the repository."""
    revision: str | None = None
    """Branch, tag or commit (default: ``main``)."""

    @property
    def uri(self) -> str:
        """``hf://OWNER/REPO/FILE`` (``@REVISION`` after the repository when one is set)."""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HF_SCHEME}{self.repo_id}{rev}/{self.filename}"


def parse_hf_uri(uri: str) -> HubFile:
    """``hf://OWNER/REPO/FILE`` or ``hf://OWNER/REPO@REVISION/FILE`` -> :class:`HubFile`.

    Raises:
        ValueError: not of that form.
    """
    if not uri.startswith(HF_SCHEME):
        raise ValueError(f"{uri!r} is not an hf:// address")
    parts = uri[len(HF_SCHEME) :].split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{uri!r}: expected hf://OWNER/REPO/FILE, e.g. "
                         "hf://TheBloke/airoboros-l2-7B-gpt4-1.4.1-GGML/airoboros-l2-7b-gpt4-1.4.1.ggmlv3.q4_K_M.bin")
    owner, repo, filename = parts
    repo, _, revision = repo.partition("@")
    return HubFile(f"{owner}/{repo}", filename, revision or None)


def is_hub_reference(model: str | os.PathLike) -> bool:
    """Whether ``model`` names a Hub file (``hf://...``) rather than a local path."""
    return isinstance(model, str) and model.startswith(HF_SCHEME)


def download(
    file: HubFile | str,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    token: str | bool | None = None,
    progress: bool | None = None,
) -> Path:
    """The local path of a Hub file, downloaded into the cache unless it is there already.

    Args:
        file: A :class:`HubFile` or an ``hf://`` address.
        cache_dir: Cache directory (default: ``huggingface_hub``'s, from ``HF_HUB_CACHE``/``HF_HOME``).
        offline: Only look in the cache (default: ``HF_HUB_OFFLINE``).
        token: Access token for gated or private repositories (default: the saved login, ``HF_TOKEN``).
        progress: Show the download bar (default: on a terminal unless logging is quieter than INFO).

    Raises:
        DownloadError: ``huggingface_hub`` is not installed, the file is not in the cache while offline,
            or the repository/file does not exist or cannot be reached.
    """
    if isinstance(file, str):
        file = parse_hf_uri(file)
    try:
        import huggingface_hub
        from huggingface_hub import constants as hub_constants
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise DownloadError(
            f"{file.uri}: reading models from the Hugging Face Hub needs the 'hub' extra: "
            "pip install 'airoboros-ggml[hub]' (or download the file and pass its path)"
        ) from None
    bar = None if progress_enabled(progress) else _QuietBar  # None: huggingface_hub's own bar
    try:
        path = huggingface_hub.hf_hub_download(
            file.repo_id, file.filename, revision=file.revision, cache_dir=cache_dir,
            local_files_only=bool(offline), token=token, tqdm_class=bar,
        )
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled) as e:
        raise DownloadError(
            f"{file.uri}: not in the Hugging Face cache ({cache_dir or hub_constants.HF_HUB_CACHE}) "
            "and downloading is off (HF_HUB_OFFLINE=1 or offline mode, or no network); download it once online "
            "or pass a local path"
        ) from e
    except hub_errors.RepositoryNotFoundError as e:
        raise DownloadError(f"{file.uri}: no repository {file.repo_id!r} on the Hub (or it is private: log in "
                            "with `hf auth login` or set HF_TOKEN)") from e
    except hub_errors.RevisionNotFoundError as e:
        raise DownloadError(f"{file.uri}: the repository has no revision {file.revision!r}") from e
    except hub_errors.EntryNotFoundError as e:
        raise DownloadError(f"{file.uri}: the repository {file.repo_id} has no file {file.filename!r}") from e
    except (hub_errors.HfHubHTTPError, OSError) as e:
        raise DownloadError(f"{file.uri}: download failed: {e}") from e
    log.debug("%s -> %s", file.uri, path)
    return Path(path)


def resolve_model(
    model: str | os.PathLike,
    *,
    hf_repo: str | None = None,
    hf_file: str | None = None,
    offline: bool | None = None,
    progress: bool | None = None,
) -> str | os.PathLike:
    """What to load for a ``-m`` argument: Hub references become cached local paths, the rest passes through.

    Args:
        model: A path, a name such as ``smollm2``, or ``hf://OWNER/REPO/FILE``.
        hf_repo: llama.cpp's ``--hf-repo OWNER/REPO`` (with ``hf_file``); takes precedence over ``model``.
        hf_file: llama.cpp's ``--hf-file FILE``.
        offline: Only look in the Hub cache.
        progress: Show the download bar.

    Raises:
        DownloadError: as :func:`download`; also ``hf_repo`` without ``hf_file`` or the other way round.
    """
    if hf_repo or hf_file:
        if not (hf_repo and hf_file):
            raise DownloadError("--hf-repo and --hf-file go together: the repository OWNER/REPO and the file in it")
        return download(HubFile(hf_repo, hf_file), offline=offline, progress=progress)
    if is_hub_reference(model):
        return download(str(model), offline=offline, progress=progress)
    return model


class _QuietBar(tqdm):
    """huggingface_hub's download bar, switched off."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
