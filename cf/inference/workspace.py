"""The pyhf (HistFactory) workspace of an inference model and asymptotic CLs upper limits on its signal strength."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from cf.inference.model import InferenceModel, ParameterType, shape_scale
from cf.inference.shapes import CategoryShapes
from cf.util import UserError

__all__ = ["build_pyhf_spec", "compute_limits", "rough_limit_estimate", "validate_pyhf_spec"]

#: Interpolation of the pyhf modifiers that matches combine: lnN is exactly log-normal (code1), shapes are
#: interpolated with a polynomial and extrapolated linearly (code4p), like combine's vertical template morphing.
PYHF_MODIFIER_SETTINGS: dict[str, dict[str, str]] = {
    "normsys": {"interpcode": "code1"},
    "histosys": {"interpcode": "code4p"},
}
#: The smallest total yield of a bin in the pyhf fits (a bin without any MC would make the likelihood infinite).
PYHF_MIN_BIN_YIELD = 1e-9
#: The upper bound of a rate_unconstrained factor, in units of its start value (pyhf's normfactor default is 10).
UNCONSTRAINED_RATE_BOUND = 10.0


def rough_limit_estimate(model: InferenceModel, shapes: Mapping[str, CategoryShapes]) -> float:
    """A rough scale of the limit on the signal strength: ``2 sqrt(max(B, 1)) / S`` in the most sensitive bin.

    Raises:
        UserError: If the signal has no expected events in any bin.
    """
    signals = set(model.signal_names)
    pairs = []
    for numbers in shapes.values():
        zeros = np.zeros(len(numbers.edges) - 1)
        signal = sum((numbers.nominal[p] for p in numbers.processes if p in signals), zeros)
        pairs.append((signal, sum((numbers.nominal[p] for p in numbers.processes if p not in signals), zeros)))
    best = _most_sensitive_bin(pairs)
    if not math.isfinite(best):
        raise UserError(f"inference model '{model.cls_name}': the signal has no expected events in any category")
    return best


def _most_sensitive_bin(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """The smallest ``2 sqrt(max(B, 1)) / S`` over the bins with signal of (signal, background) yields (or inf)."""
    best = math.inf
    for signal, background in pairs:
        for s, b in zip(signal, background, strict=True):
            if s > 0:
                best = min(best, 2.0 * math.sqrt(max(b, 1.0)) / s)
    return best


def build_pyhf_spec(
    model: InferenceModel,
    shapes: Mapping[str, CategoryShapes],
    poi_upper_bound: float | None = None,
) -> dict[str, Any]:
    """The pyhf (HistFactory) workspace of the model: the same numbers and uncertainties as its datacards.

    Channels are the categories, samples their processes; the signal strength is a ``normfactor`` on the
    signals. Per process, a ``rate_gauss`` effect is a ``normsys`` (hi = kappa_up, lo = kappa_down, a symmetric
    kappa has lo = 1 / kappa as in combine), a parameter acting as shape a ``histosys`` (the up / down yields;
    a rate_gauss parameter that acts as shape on other processes becomes a ``histosys`` of the scaled nominal
    yields, since pyhf cannot share one name between modifier types), ``rate_uniform`` a ``normfactor`` bounded
    to ``[1 / kappa, kappa]`` (a profile-likelihood fit sees only the bounds, as for combine's lnU) and
    ``rate_unconstrained`` a ``normfactor`` starting at its effect. MC statistics are one ``staterror`` per
    channel on the backgrounds (and the signals when the category's ``mc_stats`` includes them), as combine's
    ``autoMCStats``. Parameters of the same name are correlated.

    Args:
        model: The inference model.
        shapes: Category name -> its numbers.
        poi_upper_bound: The upper bound of the signal strength (default: 100 times :func:`rough_limit_estimate`,
            at least 10), so that the fits reach the limit even for a tiny signal.

    Returns:
        The workspace spec (json-serializable).

    Raises:
        UserError: For a shape parameter scaled by an effect other than 1 (combine-only).
    """
    channels, observations = [], []
    bounds: dict[str, dict[str, Any]] = {}
    shape_names = {
        name for numbers in shapes.values() for per_process in numbers.shifted.values() for name in per_process
    }
    for category in model.categories:
        numbers = shapes[category.name]
        mc_stats = model.mc_stats_settings(category.name)
        include_signal = len(mc_stats) > 1 and mc_stats[1] not in {"0", "False"}
        samples = []
        for process in numbers.processes:
            is_signal = process in model.signal_names
            modifiers: list[dict[str, Any]] = []
            if is_signal:
                modifiers.append({"name": model.poi, "type": "normfactor", "data": None})
            for name in model.category_parameters(category.name):
                modifier = _modifier(model, category.name, numbers, name, process, shape_names, bounds)
                if modifier is not None:
                    modifiers.append(modifier)
            if mc_stats and (include_signal or not is_signal):
                errors = np.sqrt(np.clip(numbers.variances[process], 0.0, None))
                modifiers.append({"name": f"staterror_{category.name}", "type": "staterror", "data": _floats(errors)})
            samples.append({"name": process, "data": _floats(numbers.nominal[process]), "modifiers": modifiers})
        channels.append({"name": category.name, "samples": samples})
        observations.append({"name": category.name, "data": _floats(numbers.data)})
    if poi_upper_bound is None:
        poi_upper_bound = max(10.0, 100.0 * rough_limit_estimate(model, shapes))
    parameters = [{"name": model.poi, "bounds": [[0.0, float(poi_upper_bound)]]}]
    parameters += [{"name": name, **settings} for name, settings in bounds.items()]
    measurement = {"name": model.cls_name, "config": {"poi": model.poi, "parameters": parameters}}
    return {"channels": channels, "observations": observations, "measurements": [measurement], "version": "1.0.0"}


def _modifier(
    model: InferenceModel,
    category: str,
    numbers: CategoryShapes,
    name: str,
    process: str,
    shape_names: set[str],
    bounds: dict[str, dict[str, Any]],
) -> dict[str, Any] | None:
    """The pyhf modifier of parameter ``name`` on ``process`` (None where it does not act)."""
    nominal = numbers.nominal[process]
    if name in numbers.shifted.get(process, {}):
        parameter = model.get_parameter(name, process=process, category=category)
        if shape_scale(parameter) != 1.0:
            raise UserError(
                f"shape parameter '{name}' is scaled by {parameter.effect}: pyhf needs the shifts as they are"
            )
        up, down = numbers.shifted[process][name]
        return {"name": name, "type": "histosys", "data": {"hi_data": _floats(up), "lo_data": _floats(down)}}
    if name not in numbers.effects.get(process, {}):
        return None
    effect = numbers.effects[process][name]
    parameter_type = model.get_parameter(name, process=process, category=category).type
    if parameter_type is ParameterType.rate_gauss:
        down, up = effect if isinstance(effect, tuple) else (1.0 / effect, effect)
        if name in shape_names:
            return {
                "name": name,
                "type": "histosys",
                "data": {"hi_data": _floats(nominal * up), "lo_data": _floats(nominal * down)},
            }
        return {"name": name, "type": "normsys", "data": {"hi": float(up), "lo": float(down)}}
    if parameter_type is ParameterType.rate_uniform:
        bounds[name] = {"bounds": [[1.0 / effect, float(effect)]], "inits": [1.0]}
    else:
        bounds[name] = {"bounds": [[0.0, UNCONSTRAINED_RATE_BOUND * effect]], "inits": [float(effect)]}
    return {"name": name, "type": "normfactor", "data": None}


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in np.asarray(values, dtype=np.float64)]


@contextlib.contextmanager
def _quiet_pyhf_schema() -> Iterator[None]:
    """Silence the one known warning of pyhf 0.7.6's schema validation (on every workspace and model)."""
    with warnings.catch_warnings():
        # pyhf 0.7.6 resolves its schema references with jsonschema's deprecated RefResolver
        warnings.filterwarnings("ignore", message="jsonschema.RefResolver is deprecated", category=DeprecationWarning)
        yield


def validate_pyhf_spec(spec: Mapping[str, Any]) -> Any:
    """Validate the spec against pyhf's workspace schema and return the ``pyhf.Workspace``.

    Raises:
        UserError: If the spec does not follow the schema (the message names the first violation).
    """
    import pyhf

    with _quiet_pyhf_schema():
        try:
            pyhf.schema.validate(dict(spec), "workspace.json")
            return pyhf.Workspace(dict(spec))
        except pyhf.exceptions.InvalidSpecification as error:
            raise UserError(f"the pyhf workspace does not follow the schema: {error}") from None


def _pyhf_model(workspace: Any) -> Any:
    """The pyhf model of a workspace with combine-like interpolation and yields clipped at zero.

    Per sample and bin, the yields are clipped at zero (a shape variation of a sparse MC histogram could
    otherwise make them negative), and each bin's total at a tiny positive value, so that the likelihood
    stays finite for every parameter value the fits try.
    """
    return workspace.model(
        modifier_settings=PYHF_MODIFIER_SETTINGS,
        clip_sample_data=0.0,
        clip_bin_data=PYHF_MIN_BIN_YIELD,
    )


def _spec_limit_scale(spec: Mapping[str, Any], poi: str) -> float:
    """``2 sqrt(max(B, 1)) / S`` in the most sensitive bin of the spec (S: samples with the POI normfactor)."""
    pairs = []
    for channel in spec["channels"]:
        signal = np.zeros(len(channel["samples"][0]["data"]))
        background = np.zeros_like(signal)
        for sample in channel["samples"]:
            is_signal = any(m["type"] == "normfactor" and m["name"] == poi for m in sample["modifiers"])
            if is_signal:
                signal += np.asarray(sample["data"], dtype=np.float64)
            else:
                background += np.asarray(sample["data"], dtype=np.float64)
        pairs.append((signal, background))
    best = _most_sensitive_bin(pairs)
    if not math.isfinite(best):
        raise UserError(f"the signal (samples with the normfactor '{poi}') has no expected events in any bin")
    return best


def compute_limits(
    spec: Mapping[str, Any],
    *,
    level: float = 0.05,
    observed: bool = True,
    n_scan: int = 20,
) -> dict[str, Any]:
    """Asymptotic CLs upper limits on the signal strength of a pyhf workspace.

    The expected limits (median, +-1 sigma, +-2 sigma) are those of the pre-fit background-only Asimov data
    (every nuisance at its nominal value, signal strength 0); the observed limit uses the workspace's
    observations. The test statistic is q-tilde (pyhf's default). The scan range adapts to the signal size:
    the median expected limit is first estimated from the Asimov CLs at a trial value (asymptotically
    ``r_med = r * 1.96 / Phi^-1(1 - CLs_med(r) / 2)``, iterated from ``2 sqrt(B) / S`` of the most sensitive
    bin), then ``pyhf.infer.hypotest`` runs on ``n_scan`` points from 0 to 2.5 times that estimate (extended
    while a CLs curve has not crossed ``level``), and each limit is interpolated in ``log(CLs)`` between the
    two points around the crossing, like ``pyhf.infer.intervals.upper_limits.upper_limit`` with a scan.

    Args:
        spec: The workspace spec (its measurement's POI bound must exceed the limits).
        level: 1 - confidence level.
        observed: Whether to compute the observed limit too.
        n_scan: Points of the CLs scan.

    Returns:
        A dict with the keys ``poi``, ``cl``, ``method``, ``observed``, ``expected`` (a dict with ``-2sigma``,
        ``-1sigma``, ``median``, ``+1sigma`` and ``+2sigma``), ``poi_upper_bound`` and ``scan`` (a dict with
        ``poi``, ``cls_observed``, a list or None, and ``cls_expected``, five values per point).

    Raises:
        UserError: If the signal is empty or the limit lies beyond the POI bound of the spec.
    """
    import pyhf

    pyhf.set_backend("numpy")
    with _quiet_pyhf_schema():
        workspace = validate_pyhf_spec(spec)
        model = _pyhf_model(workspace)
        return _compute_limits(workspace, model, level, observed, n_scan)


def _compute_limits(workspace: Any, model: Any, level: float, observed: bool, n_scan: int) -> dict[str, Any]:
    import pyhf
    from scipy.stats import norm

    poi_index = model.config.poi_index
    poi_name = model.config.poi_name
    bound = float(model.config.suggested_bounds()[poi_index][1])
    init = list(model.config.suggested_init())
    init[poi_index] = 0.0
    datasets = {"expected": model.expected_data(init)}
    if observed:
        datasets["observed"] = workspace.data(model)
    cache: dict[tuple[str, float], tuple[float, list[float]]] = {}

    def hypotest(poi: float, kind: str = "expected") -> tuple[float, list[float]]:
        key = (kind, float(poi))
        if key not in cache:
            if not poi < bound:
                raise UserError(
                    f"the upper limit on '{poi_name}' lies beyond its bound {bound:g} in the workspace; "
                    "raise the bound",
                )
            try:
                cls, band = pyhf.infer.hypotest(poi, datasets[kind], model, return_expected_set=True)
            except pyhf.exceptions.FailedMinimization as error:
                raise RuntimeError(f"the pyhf fit failed at {poi_name} = {poi:g} ({kind} data): {error}") from None
            cache[key] = (float(cls), [float(value) for value in band])
        return cache[key]

    # the median expected limit, from the asymptotic relation between CLs and the Asimov test statistic
    target = float(norm.isf(level / 2.0))
    poi = min(_spec_limit_scale(workspace, poi_name), bound / 10.0)
    for _ in range(6):
        cls_median = hypotest(poi)[1][2]
        z = float(norm.isf(cls_median / 2.0)) if cls_median > 0 else math.inf
        if z < 0.05:  # far below the limit: CLs is still ~1
            estimate = 4.0 * poi
        elif not math.isfinite(z):  # far above it
            estimate = poi / 4.0
        else:
            estimate = poi * target / z
        estimate = min(estimate, bound / 3.0)
        converged = abs(estimate / poi - 1.0) < 0.02
        poi = estimate
        if converged:
            break

    # the scan, extended until every curve has crossed the CL line
    step = 2.5 * poi / n_scan
    pois = [step * (i + 1) for i in range(n_scan)]
    kinds = list(datasets)
    for _ in range(4 * n_scan):
        last = pois[-1]
        curves = [*hypotest(last)[1], *([hypotest(last, "observed")[0]] if observed else [])]
        if max(curves) < level:
            break
        pois.append(last + step)
    cls_expected = [hypotest(p)[1] for p in pois]
    cls_observed = [hypotest(p, "observed")[0] for p in pois] if observed else None

    expected = [_crossing(pois, [band[i] for band in cls_expected], level) for i in range(5)]
    observed_limit = _crossing(pois, cls_observed, level) if cls_observed is not None else None
    keys = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")
    return {
        "poi": poi_name,
        "cl": 1.0 - level,
        "method": f"asymptotic CLs, test statistic qtilde, pyhf {pyhf.__version__}",
        "observed": observed_limit,
        "expected": dict(zip(keys, expected, strict=True)),
        "poi_upper_bound": bound,
        "n_hypotests": len(cache),
        "data": kinds,
        "scan": {"poi": pois, "cls_observed": cls_observed, "cls_expected": cls_expected},
    }


def _crossing(pois: Sequence[float], cls: Sequence[float], level: float) -> float:
    """Where a falling CLs curve crosses ``level``: interpolated in log(CLs) between the points around it."""
    values = [1.0, *cls]
    points = [0.0, *pois]
    for i in range(1, len(points)):
        if values[i] < level:
            low, high = max(values[i - 1], 1e-300), max(values[i], 1e-300)
            fraction = (math.log(low) - math.log(level)) / (math.log(low) - math.log(high))
            return points[i - 1] + fraction * (points[i] - points[i - 1])
    raise UserError(f"the CLs scan up to {points[-1]:g} does not cross {level}")
