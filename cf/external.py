"""External files of an analysis (correction JSONs, luminosity masks, ...): declared in the config, fetched once.

A config declares them in ``config.x.external_files``, by name::

    config.x.external_files = {
        # a local path (environment variables are expanded)
        "jet_jerc": "$CF_BASE/my_analysis/corrections/jet_jerc.json",
        # a URL (https://, http://, root://) with the sha256 checksum the download must have
        "muon_sf": {"url": "https://example.org/muon_Z.json.gz", "sha256": "3f2a..."},
    }

``cf.BundleExternalFiles`` copies or downloads every file once into the store (all of them verified before any
is kept) and writes a manifest; column functions require that task in their ``requires`` hook and read the
files in their ``setup`` hook with :func:`external_file_paths`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cf.contract import config_entry
from cf.util import UserError, expand_path, short_hash

__all__ = [
    "ExternalFile",
    "external_file_paths",
    "external_files",
    "fetch_external_file",
    "file_sha256",
    "load_correction",
]

#: The URL schemes a file can be downloaded from.
REMOTE_SCHEMES = ("https://", "http://", "root://")
#: Seconds to wait for a server before a download counts as failed.
DOWNLOAD_TIMEOUT = 60.0
#: Bytes read at a time when copying and hashing.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ExternalFile:
    """One declared external file.

    Attributes:
        name: The name it is declared (and looked up) under.
        source: A local path or a URL (``https://``, ``http://``, ``root://``).
        sha256: The checksum it must have (empty: not checked).
    """

    name: str
    source: str
    sha256: str = ""

    @property
    def is_remote(self) -> bool:
        return self.source.startswith(REMOTE_SCHEMES)

    @property
    def file_name(self) -> str:
        """The name of the bundled copy: the declared name plus the source's extensions (``.json.gz``)."""
        base = os.path.basename(self.source.split("?", 1)[0].rstrip("/"))
        suffix = base[base.index(".") :] if "." in base else ""
        return f"{self.name}{suffix}"


def external_files(config_inst: Any) -> list[ExternalFile]:
    """The external files the config declares (``config.x.external_files``), checked.

    Raises:
        UserError: For a bad name, a declaration that is neither a path / URL nor a mapping with ``url``, an
            unknown key, a malformed checksum or an unsupported URL scheme.
    """
    declared = config_entry(config_inst, "external_files")
    if not isinstance(declared, Mapping):
        raise UserError(f"config '{config_inst.name}': external_files must map names to paths or URLs")
    return [_parse(config_inst.name, str(name), value) for name, value in declared.items()]


def _parse(config: str, name: str, value: Any) -> ExternalFile:
    where = f"external file '{name}' of config '{config}'"
    if not name.replace("_", "").isalnum():
        raise UserError(f"{where}: use letters, digits and '_' in the name")
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, Mapping) or not isinstance(value.get("url"), str) or not value["url"]:
        raise UserError(f"{where}: give a path or URL, or a mapping with 'url' (and optionally 'sha256')")
    unknown = sorted(set(value) - {"url", "sha256"})
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}, allowed: url, sha256")
    checksum = str(value.get("sha256", "")).lower()
    if checksum and (len(checksum) != 64 or any(char not in "0123456789abcdef" for char in checksum)):
        raise UserError(f"{where}: sha256 must be 64 hexadecimal digits, got '{checksum}'")
    source = value["url"]
    if "://" in source and not source.startswith((*REMOTE_SCHEMES, "file://")):
        raise UserError(f"{where}: unsupported URL '{source}', allowed: local paths, {', '.join(REMOTE_SCHEMES)}")
    return ExternalFile(name=name, source=source.removeprefix("file://"), sha256=checksum)


def declaration_hash(files: list[ExternalFile]) -> str:
    """A short hash of the declarations: the bundle's folder, so that a changed declaration fetches again."""
    return short_hash([[f.name, f.source, f.sha256] for f in files])


def file_sha256(path: str) -> str:
    """The sha256 checksum of a file, as 64 hexadecimal digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_external_file(external: ExternalFile, destination: str) -> str:
    """Copy or download one external file to ``destination`` and check its checksum; returns the sha256.

    Raises:
        UserError: If the source is missing or unreachable, or the checksum differs (``destination`` is removed).
    """
    try:
        if external.source.startswith("root://"):
            _download_xrootd(external.source, destination)
        elif external.is_remote:
            _download_http(external.source, destination)
        else:
            _copy_local(expand_path(external.source), destination)
    except (OSError, RuntimeError, ValueError, urllib.error.URLError) as error:
        _remove(destination)
        if isinstance(error, UserError):
            raise
        raise UserError(f"external file '{external.name}': cannot fetch {external.source}: {error}") from None
    checksum = file_sha256(destination)
    if external.sha256 and checksum != external.sha256:
        _remove(destination)
        raise UserError(
            f"external file '{external.name}' from {external.source} has the sha256 {checksum}, "
            f"but the config declares {external.sha256}",
        )
    return checksum


def _copy_local(path: str, destination: str) -> None:
    if not os.path.isfile(path):
        raise UserError(f"external file not found: {path}")
    shutil.copyfile(path, destination)


def _download_http(url: str, destination: str) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT)
    except urllib.error.HTTPError as error:
        error.close()  # the error holds the connection
        raise
    with response, open(destination, "wb") as file:
        shutil.copyfileobj(response, file, CHUNK_BYTES)


def _download_xrootd(url: str, destination: str) -> None:
    import fsspec

    with fsspec.open(url, "rb") as remote, open(destination, "wb") as file:
        shutil.copyfileobj(remote, file, CHUNK_BYTES)


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def external_file_paths(manifest_target: Any) -> dict[str, str]:
    """The local paths of the bundled files by name, from the output (manifest) of ``cf.BundleExternalFiles``.

    The manifest's ``file`` entries are relative to its folder (an absolute path is taken as it is).
    """
    manifest = manifest_target.load(formatter="json")
    base = os.path.dirname(manifest_target.path)
    return {name: os.path.join(base, entry["file"]) for name, entry in manifest["files"].items()}


def load_correction(manifest_target: Any, file_name: str, correction: str) -> Any:
    """A correction of a bundled correctionlib file, e.g. ``load_correction(bundle, "jet_jerc", "..._L2L3Residual_...")``.

    Raises:
        UserError: If the config declares no such file or the file has no such correction (listing what it has).
    """
    import correctionlib

    paths = external_file_paths(manifest_target)
    if file_name not in paths:
        raise UserError(f"no external file '{file_name}' is declared, declared: {', '.join(sorted(paths)) or '(none)'}")
    corrections = correctionlib.CorrectionSet.from_file(paths[file_name])
    if correction not in corrections:
        raise UserError(
            f"external file '{file_name}' ({paths[file_name]}) has no correction '{correction}', "
            f"it has: {', '.join(sorted(corrections))}",
        )
    return corrections[correction]
