"""Limits against the mass of a resonance: one ``cf.PyhfLimit`` per mass, one plot and one json.

    CreatePyhfWorkspace, PyhfLimit (per mass, the inference model's mass setting)
        -> LimitsPerMass (a workflow, one branch per mass: local, or batch jobs with --workflow slurm / htcondor)
        -> PlotLimitsVsMass

The inference model takes the mass as a setting (``--mass-setting``, default ``mass``): each mass of ``--masses``
is one set of datacards, one workspace and one limit, so masses already computed are not computed again. The
histograms of all masses come from the same ``--ml-models`` evaluation, e.g. a parametrized network evaluated once
per event at every mass (``--ml-models "param_dnn[masses=300:500:1000]"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import law
import luigi
import numpy as np

from cf.io import dump_json, load_json
from cf.plotting import auc, cms_style, new_figure, roc_curve, save_figure
from cf.tasks.histograms import CreateHistograms
from cf.tasks.inference import CreatePyhfWorkspace, InferenceModelMixin, PyhfLimit, inference_model_instance
from cf.tasks.remote import BatchWorkflow, batch_parameters_of, check_workflow_and_resources
from cf.util import UserError

__all__ = ["LimitsPerMass", "MassScanMixin", "PlotLimitsVsMass", "binned_aucs"]

#: The keys of the expected limits, from the lower edge of the 2 sigma band to its upper edge.
BAND_KEYS = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")


def binned_aucs(spec: Mapping[str, Any], poi: str) -> dict[str, float]:
    """Per channel of a pyhf workspace, the AUC of the fitted variable: the signal against the sum of the rest.

    Each bin is one value of the discriminant (ties within a bin count 1/2), weighted by the expected yields; the
    signal samples are those scaled by the POI.
    """
    aucs = {}
    for channel in spec["channels"]:
        n_bins = len(channel["samples"][0]["data"])
        signal, background = np.zeros(n_bins), np.zeros(n_bins)
        for sample in channel["samples"]:
            scaled = any(m["type"] == "normfactor" and m["name"] == poi for m in sample["modifiers"])
            yields = np.clip(np.asarray(sample["data"], dtype=np.float64), 0.0, None)
            if scaled:
                signal += yields
            else:
                background += yields
        bins = np.arange(n_bins, dtype=np.float64)
        scores = np.concatenate([bins, bins])
        labels = np.concatenate([np.ones(n_bins, dtype=bool), np.zeros(n_bins, dtype=bool)])
        aucs[channel["name"]] = auc(*roc_curve(scores, labels, np.concatenate([signal, background])))
    return aucs


class MassScanMixin(InferenceModelMixin):
    """``--masses`` (values of the inference model's ``--mass-setting``), checked against the model's settings."""

    masses = law.CSVParameter(
        cls=luigi.IntParameter, description="the masses, each a value of the inference model's --mass-setting"
    )
    mass_setting = luigi.Parameter(default="mass", description="the setting of the inference model that is the mass")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if "masses" in params and "inference_model" in params:
            cls._check_masses(params)
            params["masses"] = tuple(sorted(params["masses"]))
        return params

    @staticmethod
    def _check_masses(params: dict[str, Any]) -> None:
        model = inference_model_instance(
            params["inference_model"], tuple(params["inference_model_settings"]), tuple(params["configs"])
        )
        setting_name = params["mass_setting"]
        if setting_name not in model.declared_settings():
            raise UserError(
                f"inference model '{model.cls_name}' declares no setting '{setting_name}' (--mass-setting); "
                f"its settings: {', '.join(model.setting_names()) or 'none'}",
            )
        if setting_name in model.settings:
            raise UserError(f"--inference-model-settings sets '{setting_name}', which --masses gives: leave it out")
        if not params["masses"]:
            raise UserError(f"no --masses given: the values of '{setting_name}' to compute the limit at")
        if len(set(params["masses"])) != len(params["masses"]):
            raise UserError(f"--masses names a mass twice: {','.join(map(str, params['masses']))}")
        for mass in params["masses"]:
            model.checked_settings({setting_name: mass})

    def mass_settings(self, mass: int) -> tuple[str, ...]:
        """The inference model's settings of one mass."""
        return (*self.inference_model_settings, f"{self.mass_setting}={mass}")


class LimitsPerMass(MassScanMixin, BatchWorkflow):
    """One branch per mass of ``--masses``: its ``cf.PyhfLimit`` and the AUCs of its workspace, as one json.

    A branch requires the limit of its mass, so that with ``--workflow slurm`` (or ``htcondor``) each mass is one
    batch job that runs the mass's ``cf.PyhfLimit`` and whatever below it is incomplete (its datacards, the
    histograms of its variable); ``--workers N`` runs N masses at a time locally. The shared work of all masses
    (the chain and the ML evaluation) is the workflow's requirement, done before any branch starts, so that no two
    jobs make the same outputs. A branch's output does not depend on the other masses of the scan.
    """

    def create_branch_map(self) -> dict[int, int]:
        return dict(enumerate(self.masses))

    def store_parts(self) -> list[str]:
        # no mass list in the path: a mass computed for one scan is complete for every scan that has it
        return InferenceModelMixin.store_parts(self)

    def workflow_requires(self) -> Any:
        reqs = super().workflow_requires()
        reqs["shared"] = shared_requirements(self)
        return reqs

    def requires(self) -> dict[str, Any]:
        settings = self.mass_settings(self.branch_data)
        return {
            "limit": PyhfLimit.req(self, inference_model_settings=settings),
            "workspace": CreatePyhfWorkspace.req(self, inference_model_settings=settings),
        }

    def output(self) -> law.LocalFileTarget:
        return self.target(f"limit__{self.mass_setting}_{self.branch_data}.json")

    def run(self) -> None:
        limits = load_json(self.input()["limit"]["json"].path)
        row = {
            "mass": self.branch_data,
            "poi": limits["poi"],
            "cl": limits["cl"],
            "expected": limits["expected"],
            "observed": limits["observed"],
            "auc": binned_aucs(load_json(self.input()["workspace"].path), limits["poi"]),
        }
        dump_json(self.output().path, row)


def shared_requirements(task: LimitsPerMass) -> list[Any]:
    """The inputs of the histograms of the masses: the reduced events, columns and ML evaluations of each dataset.

    They are the requirements of the masses' histogram workflows (each dataset's once: the masses share them and
    differ in the variable and the signal dataset), with the scan's ``--workflow``, so that they run as batch jobs
    of their own when the limits do.
    """
    shared: dict[str, Any] = {}
    for mass in task.masses:
        workspace = CreatePyhfWorkspace.req(task, inference_model_settings=task.mass_settings(mass))
        for merge in law.util.flatten(workspace.histogram_requirements()):
            histograms = CreateHistograms.req(merge, branch=-1, workflow=task.workflow)
            for requirement in law.util.flatten(histograms.input_requirements()):
                shared[requirement.task_id] = requirement
    return list(shared.values())


class PlotLimitsVsMass(MassScanMixin, batch_parameters_of(LimitsPerMass, MassScanMixin)):  # type: ignore[misc]
    """The 95% CL upper limits of an inference model at several masses, plotted against the mass.

    ``limits_vs_mass.json`` holds per mass the expected limits (median, +-1 sigma, +-2 sigma), the observed limit
    (null where the model observes no data) and, per category, the AUC of the fitted variable (the signal against
    all backgrounds, from the workspace's binned yields); ``limits_vs_mass.png`` / ``.pdf`` show the expected
    limit with its 68% (green) and 95% (yellow) bands, the observed limit and, below, the AUCs.
    """

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        check_workflow_and_resources(params)
        return params

    def store_parts(self) -> list[str]:
        return [*super().store_parts(), "masses__" + "_".join(str(mass) for mass in self.masses)]

    def requires(self) -> LimitsPerMass:
        return LimitsPerMass.req(self)

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {ext: self.target(f"limits_vs_mass.{ext}") for ext in ("json", "png", "pdf")}

    def run(self) -> None:
        model = self.inference_model_inst
        rows = [load_json(target.path) for target in self.input()["collection"].targets.values()]
        per_mass = {str(row["mass"]): {key: row[key] for key in ("expected", "observed", "auc")} for row in rows}
        result = {
            "inference_model": model.cls_name,
            "settings": model.settings,
            "mass_setting": self.mass_setting,
            "configs": list(self.configs),
            "ml_models": list(self.ml_models),
            "poi": model.poi,
            "poi_label": model.poi_label or f"95% CL upper limit on {model.poi}",
            "cl": rows[0]["cl"],
            "masses": list(self.masses),
            "limits": per_mass,
        }
        outputs = self.output()
        dump_json(outputs["json"].path, result)
        plot_limits_vs_mass(result, {ext: outputs[ext].path for ext in ("png", "pdf")})
        lines = [f"{mass:>6} {values['expected']['median']:.4g}" for mass, values in per_mass.items()]
        self.publish_message("median expected limit per mass:\n" + "\n".join(lines))


def plot_limits_vs_mass(result: Mapping[str, Any], paths: Mapping[str, str]) -> None:
    """The expected limit with its bands and the observed limit against the mass, the AUCs below (atomic writes)."""
    masses = np.asarray(result["masses"], dtype=np.float64)
    rows = [result["limits"][str(mass)] for mass in result["masses"]]
    band = {key: np.asarray([row["expected"][key] for row in rows]) for key in BAND_KEYS}
    with cms_style():
        figure, (top, bottom) = new_figure(
            (9.0, 9.0), nrows=2, layout="constrained", sharex=True, gridspec_kw={"height_ratios": (3, 1)}
        )
    top.fill_between(masses, band["-2sigma"], band["+2sigma"], color="#ffcc00", label=r"expected $\pm 2\sigma$")
    top.fill_between(masses, band["-1sigma"], band["+1sigma"], color="#00cc00", label=r"expected $\pm 1\sigma$")
    top.plot(masses, band["median"], color="black", linestyle="--", label="expected (median)")
    observed = [row["observed"] for row in rows]
    if all(value is not None for value in observed):
        top.plot(masses, observed, color="black", marker="o", label="observed")
    top.set_yscale("log")
    top.set_ylabel(result["poi_label"], fontsize=16)
    top.legend(loc="upper right", fontsize=14, frameon=False)
    top.set_title(f"{result['inference_model']} ({', '.join(result['configs'])})", fontsize=14)
    for channel in rows[0]["auc"]:
        bottom.plot(masses, [row["auc"][channel] for row in rows], marker="s", label=channel)
    bottom.set_ylim(0.5, 1.0)
    bottom.set_ylabel("AUC", fontsize=16)
    bottom.set_xlabel(f"{result['mass_setting']} [GeV]", fontsize=16)
    bottom.legend(loc="lower right", fontsize=12, frameon=False)
    save_figure(figure, paths)
