"""The files of a dataset, and the external files of a config.

``cf.GetDatasetLFNs`` lists the files the chain reads; for the embedded default sample,
``cf.CreateSampleFiles`` generates them on first use. ``cf.BundleExternalFiles`` fetches the files the config
declares in ``x.external_files`` (corrections, ...) into the store.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from typing import Any

import law

from cf.analysis import get_config, get_dataset, load_analysis
from cf.contract import dataset_entry
from cf.external import declaration_hash, external_files, fetch_external_file
from cf.io import dump_json
from cf.tasks.base import ConfigTask, DatasetTask
from cf.tasks.remote import BatchWorkflow
from cf.util import UserError, expand_path, import_object

__all__ = ["BundleExternalFiles", "CreateSampleFiles", "DatasetWorkflow", "GetDatasetLFNs", "is_remote"]


def is_remote(key: str) -> bool:
    """Whether a dataset key is a URL (``root://``, ``https://``, ...) rather than a local path."""
    return "://" in key and not key.startswith("file://")


def sample_spec(dataset_inst: Any) -> dict[str, Any] | None:
    """The dataset's embedded-sample generator spec (``dataset.x.sample``), or None for real data sets."""
    return dataset_entry(dataset_inst, "sample")


class CreateSampleFiles(DatasetTask):
    """Generates the files of an embedded (synthetic) dataset at its keys, if they do not exist yet.

    Runs only for datasets whose config carries ``x.sample = {"generator": "pkg.module:function",
    "kwargs": {...}}``; the generator is called as ``function(path=..., file_index=i, **kwargs)`` and must
    write each file atomically.
    """

    version = None  # type: ignore[assignment]  # the files live at the dataset's keys, not in the versioned store

    def output(self) -> law.TargetCollection:
        keys = self.dataset_inst.keys
        return law.TargetCollection([law.LocalFileTarget(expand_path(key)) for key in keys])

    def run(self) -> None:
        spec = sample_spec(self.dataset_inst)
        if spec is None:
            raise UserError(
                f"dataset '{self.dataset}' has no embedded sample generator (x.sample); its files must exist",
            )
        generate = import_object(spec["generator"])
        for file_index, target in enumerate(self.output().targets):
            if not target.exists():
                self.publish_message(f"generating {target.path}")
                generate(path=target.path, file_index=file_index, **spec.get("kwargs", {}))


class GetDatasetLFNs(DatasetTask):
    """The list of files of a dataset (its keys, environment variables and globs expanded), as json.

    Local files must exist; the number of files must equal the dataset's ``n_files``. Remote keys (``root://``)
    have their environment variables expanded and are checked when a task opens them.
    """

    #: its run() writes a short json file (see :func:`cf.tasks.workers.is_bookkeeping`)
    bookkeeping = True

    def requires(self) -> Any:
        if sample_spec(self.dataset_inst) is not None:
            return CreateSampleFiles.req(self)
        return None

    def output(self) -> law.LocalFileTarget:
        return self.target("lfns.json")

    def resolve_files(self) -> list[str]:
        files: list[str] = []
        for key in self.dataset_inst.keys:
            if is_remote(key):
                # environment variables name servers or bases (root://$CF_XROOTD_SERVER//...), no globbing remotely
                files.append(expand_path(key))
                continue
            path = expand_path(key.removeprefix("file://"))
            matches = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
            missing = [match for match in matches if not os.path.isfile(match)]
            if not matches or missing:
                raise UserError(
                    f"dataset '{self.dataset}': file(s) of key '{key}' not found: {', '.join(missing) or path}",
                )
            files.extend(matches)
        n_files = self.dataset_inst.n_files
        if len(files) != n_files:
            raise UserError(f"dataset '{self.dataset}' declares n_files={n_files} but its keys give {len(files)}")
        return files

    def run(self) -> None:
        dump_json(self.output().path, {"dataset": self.dataset, "files": self.resolve_files()})


class DatasetWorkflow(DatasetTask, BatchWorkflow):
    """A workflow with one branch per file of the dataset."""

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        branch = params.get("branch", -1)
        if "dataset" in params and branch is not None and branch != -1:
            n_files = get_dataset(get_config(load_analysis(), params["config"]), params["dataset"]).n_files
            if not 0 <= branch < n_files:
                raise UserError(
                    f"--branch {branch} is out of range: dataset '{params['dataset']}' has {n_files} file(s), "
                    f"branches 0 to {n_files - 1} (or -1 for all)",
                )
        return params

    def create_branch_map(self) -> dict[int, int]:
        return {index: index for index in range(self.dataset_inst.n_files)}

    def input_requirements(self) -> dict[str, Any]:
        """What each branch needs; the workflow requires the same, so no branch starts before its inputs exist.

        Subclasses override this (and call ``super()`` when they read the dataset's files themselves).
        """
        return {"lfns": self.lfns_requirement()}

    def requires(self) -> Any:
        return self.input_requirements()

    def workflow_requires(self) -> Any:
        reqs = super().workflow_requires()
        reqs.update(self.input_requirements())
        return reqs

    def lfns_requirement(self) -> GetDatasetLFNs:
        return GetDatasetLFNs.req(self)

    def input_file(self) -> str:
        """The path or URL of this branch's input file, from the dataset's file list."""
        lfns = self.lfns_requirement().output().load(formatter="json")
        return str(lfns["files"][self.branch])


class BundleExternalFiles(ConfigTask):
    """Copies or downloads the external files of the config (``x.external_files``) into the store, once.

    Every file is fetched into a temporary folder and its checksum verified before any is moved into place; the
    manifest (name -> file, source, sha256) is written last, so that a failed or killed run leaves nothing that
    counts as complete. The output folder is named by a hash of the declarations instead of ``--version``: a
    changed path, URL or checksum fetches again, an unchanged one is shared by every version.
    """

    version = None  # type: ignore[assignment]  # keyed by the declarations, see store_version

    def store_version(self) -> str:
        return f"files__{declaration_hash(external_files(self.config_inst))}"

    def output(self) -> law.LocalFileTarget:
        return self.target("manifest.json")

    def run(self) -> None:
        declared = external_files(self.config_inst)
        if not declared:
            raise UserError(f"config '{self.config}' declares no external files (x.external_files)")
        folder = os.path.dirname(self.output().path)
        temporary = os.path.join(folder, f".bundle.{uuid.uuid4().hex}.tmp")
        os.makedirs(temporary)
        try:
            manifest = {}
            for external in declared:
                self.publish_message(f"fetching {external.name} from {external.source}")
                checksum = fetch_external_file(external, os.path.join(temporary, external.file_name))
                manifest[external.name] = {"file": external.file_name, "source": external.source, "sha256": checksum}
            for entry in manifest.values():
                os.replace(os.path.join(temporary, entry["file"]), os.path.join(folder, entry["file"]))
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        dump_json(self.output().path, {"config": self.config, "files": manifest})
