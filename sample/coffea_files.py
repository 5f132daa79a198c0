"""Real CMS NanoAOD files for tests and examples: the small samples shipped in coffea's source distribution on PyPI.

The sdist (``coffea==2026.9.0``, ~30 MB) holds real NanoAOD files of several versions in ``tests/samples/``
(``nano_dy.root``: v6 Drell-Yan simulation, ``nano_dimuon.root``: v6 2018A data, ``nano_tree.root``: v1 Z -> nu nu,
``nano_tt_v12.root``, ``nano_tt_v15.root``, and RNTuple twins ``*_rntuple.root``). It is downloaded once with pip
into ``$CF_DOWNLOAD_CACHE`` (default ``$CF_DATA/downloads``) and each file is extracted atomically next to where a dataset's key expects it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from cf.io import atomic_path
from cf.util import UserError, expand_path

__all__ = ["COFFEA_SDIST", "download_sdist", "extract_member", "fetch_file"]

#: The pip requirement of the sdist and the file pip writes.
COFFEA_REQUIREMENT = "coffea==2026.9.0"
COFFEA_SDIST = "coffea-2026.9.0.tar.gz"
#: The folder of the NanoAOD samples inside the sdist.
SAMPLES_DIR = "coffea-2026.9.0/tests/samples"


def download_sdist(cache: Path | None = None) -> Path:
    """The coffea sdist in ``cache`` (default ``$CF_DOWNLOAD_CACHE`` or ``$CF_DATA/downloads``), downloaded when missing.

    Raises:
        UserError: If pip cannot download it (the message ends with pip's last output lines).
    """
    cache = cache or Path(expand_path(os.environ.get("CF_DOWNLOAD_CACHE") or "$CF_DATA/downloads"))
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / COFFEA_SDIST
    if sdist.is_file():
        return sdist
    download_dir = cache / f".download-{os.getpid()}"
    command = [
        sys.executable, "-m", "pip", "download", COFFEA_REQUIREMENT, "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--retries", "2", "--timeout", "30", "-d", str(download_dir),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    downloaded = download_dir / COFFEA_SDIST
    if result.returncode != 0 or not downloaded.is_file():
        tail = " ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise UserError(f"cannot download {COFFEA_REQUIREMENT} with pip (exit {result.returncode}): {tail[-500:]}")
    os.replace(downloaded, sdist)
    download_dir.rmdir()
    return sdist


def extract_member(sdist: Path, member: str, path: str | os.PathLike[str]) -> None:
    """Extract ``tests/samples/<member>`` of the sdist to ``path``, atomically.

    Raises:
        UserError: If the sdist has no such file (the message lists the NanoAOD files it has).
    """
    with tarfile.open(sdist) as tar:
        name = f"{SAMPLES_DIR}/{member}"
        try:
            source = tar.extractfile(name)
        except KeyError:
            source = None
        if source is None:
            known = sorted(
                m.name.rsplit("/", 1)[-1] for m in tar.getmembers() if m.name.startswith(SAMPLES_DIR + "/nano_")
            )
            raise UserError(f"'{member}' is not a sample of {COFFEA_SDIST}; available: {', '.join(known)}")
        with atomic_path(path) as tmp_path:
            Path(tmp_path).write_bytes(source.read())


def fetch_file(path: str, file_index: int, members: list[str]) -> None:
    """Write file ``file_index`` of a real dataset (the framework's entry point, see ``cf.CreateSampleFiles``).

    Args:
        path: Where the dataset's key expects the file.
        file_index: Index of the file within the dataset.
        members: The sdist's file name for each file of the dataset.
    """
    extract_member(download_sdist(), members[file_index], path)
