"""Physics processes of the analysis with their 13 and 13.6 TeV cross sections (in pb) and plotting styles.

Process ids are stable: histograms and datacards refer to them, so never renumber an existing process.
"""

from __future__ import annotations

import order as od
from scinum import Number

from sample.physics import RESONANCE_MASSES

__all__ = [
    "BR_H_BB",
    "BR_H_TAUTAU",
    "BR_W_HAD",
    "BR_W_LEP",
    "ECM",
    "ECM_RUN3",
    "REFERENCE_XSEC_X_HH",
    "data",
    "dy",
    "dy_lep_m50",
    "hh_ggf_bbtautau",
    "tt",
    "tt_dl",
    "tt_fh",
    "tt_sl",
    "x_hh_bbtautau",
    "x_hh_bbtautau_masses",
    "z_nunu",
]

#: Center-of-mass energies in TeV under which the cross sections are stored (Run 2, Run 3).
ECM = 13
ECM_RUN3 = 13.6

# branching ratios for m_H = 125 GeV (LHC Higgs XS WG, YR4) and of the W boson (PDG)
BR_H_BB: float = 0.5824
BR_H_TAUTAU: float = 0.06272
BR_W_HAD: float = 0.6741
BR_W_LEP: float = 1.0 - BR_W_HAD

data = od.Process(
    name="data",
    id=1,
    is_data=True,
    label="Data",
    color1="#000000",
)

# ggF HH at kappa_lambda = 1, m_H = 125 GeV, NNLO FTapprox (LHC Higgs XS WG): 31.05 fb
# +6% -23% (scale and m_top) +-3% (PDF and alpha_s); both Higgs bosons can be the one decaying to bb
# at 13.6 TeV 34.43 fb (LHC Higgs WG extrapolation), with the relative uncertainties of 13 TeV
hh_ggf_bbtautau = od.Process(
    name="hh_ggf_bbtautau",
    id=100,
    xsecs={
        ECM: Number(0.03105, {"scale_mtop": (0.06j, 0.23j), "pdf_alpha_s": 0.03j}) * (2 * BR_H_BB * BR_H_TAUTAU),
        ECM_RUN3: Number(0.03443, {"scale_mtop": (0.06j, 0.23j), "pdf_alpha_s": 0.03j}) * (2 * BR_H_BB * BR_H_TAUTAU),
    },
    label=r"$HH \rightarrow bb\tau\tau$",
    color1="#e42536",
    tags={"signal"},
    aux={"is_signal": True},
)

# Resonant X -> HH -> bbtautau of a narrow scalar X at the masses of the embedded sample. Its cross section is a
# REFERENCE VALUE, not a measurement or a prediction: sigma(pp -> X) x BR(X -> HH) = 1 pb at every mass and energy,
# times BR(HH -> bbtautau). A limit on the signal strength r of these processes is therefore a limit on
# sigma x BR(X -> HH) in pb (r = 0.1 is 100 fb).
#: The reference cross section sigma(pp -> X) x BR(X -> HH) in pb of the resonant signals (a settable convention).
REFERENCE_XSEC_X_HH = 1.0

x_hh_bbtautau = od.Process(
    name="x_hh_bbtautau",
    id=10000,
    label=r"$X \rightarrow HH \rightarrow bb\tau\tau$",
    color1="#7a21dd",
    tags={"signal"},
    aux={"is_signal": True},
)

#: The resonant signal process of each mass in GeV (``x_hh_bbtautau_m<mass>``, id 10000 + mass).
x_hh_bbtautau_masses: dict[int, od.Process] = {
    mass: x_hh_bbtautau.add_process(
        name=f"x_hh_bbtautau_m{mass}",
        id=10000 + mass,
        xsecs={ecm: Number(REFERENCE_XSEC_X_HH * 2 * BR_H_BB * BR_H_TAUTAU) for ecm in (ECM, ECM_RUN3)},
        label=rf"$X \rightarrow HH$ ($m_X$ = {mass} GeV)",
        color1="#7a21dd",
        tags={"signal"},
        aux={"is_signal": True, "mass": mass},
    )
    for mass in RESONANCE_MASSES
}

# Top++ v2.0 NNLO+NNLL, m_top = 172.5 GeV (LHC Top WG), uncertainties in pb; 923.6 pb at 13.6 TeV with the relative
# uncertainties of 13 TeV
tt = od.Process(
    name="tt",
    id=1000,
    xsecs={
        ECM: Number(833.9, {"scale": (20.5, 30.0), "pdf_alpha_s": 21.0, "mtop": (23.2, 22.5)}),
        ECM_RUN3: Number(923.6, {"scale": (0.0246j, 0.0360j), "pdf_alpha_s": 0.0252j, "mtop": (0.0278j, 0.0270j)}),
    },
    label=r"$t\bar{t}$",
    color1="#f89c20",
)

tt_sl = tt.add_process(
    name="tt_sl",
    id=1100,
    xsecs={ecm: tt.get_xsec(ecm) * (2 * BR_W_HAD * BR_W_LEP) for ecm in (ECM, ECM_RUN3)},
    label=r"$t\bar{t}$ (SL)",
    color1="#f89c20",
)

tt_dl = tt.add_process(
    name="tt_dl",
    id=1200,
    xsecs={ecm: tt.get_xsec(ecm) * BR_W_LEP**2 for ecm in (ECM, ECM_RUN3)},
    label=r"$t\bar{t}$ (DL)",
    color1="#964a8b",
)

tt_fh = tt.add_process(
    name="tt_fh",
    id=1300,
    xsecs={ecm: tt.get_xsec(ecm) * BR_W_HAD**2 for ecm in (ECM, ECM_RUN3)},
    label=r"$t\bar{t}$ (FH)",
    color1="#a96b59",
)

dy = od.Process(
    name="dy",
    id=2000,
    label="Drell-Yan",
    color1="#5790fc",
)

# FEWZ 3.1 NNLO for Z/gamma* -> ll (l = e, mu, tau), m_ll > 50 GeV: +-1.49 pb (integration),
# +-14.78 pb (PDF), +-2% (scale)
# at 13.6 TeV 6345.99 pb (NNLO, as used by CMS Run 3 analyses), with the relative uncertainties of 13 TeV
dy_lep_m50 = dy.add_process(
    name="dy_lep_m50",
    id=2100,
    xsecs={
        ECM: Number(6077.22, {"integration": 1.49, "pdf": 14.78, "scale": 0.02j}),
        ECM_RUN3: Number(6345.99, {"integration": 0.000245j, "pdf": 0.00243j, "scale": 0.02j}),
    },
    label=r"DY ($m_{\ell\ell} > 50$ GeV)",
    color1="#5790fc",
)
# only the m_ll > 50 GeV slice is modelled, so the parent carries its cross section
for _ecm in (ECM, ECM_RUN3):
    dy.set_xsec(_ecm, dy_lep_m50.get_xsec(_ecm))

# Z -> nu nu + jets (a real NanoAOD test file of the 2016 campaign): an estimate, not a measurement, from the DY
# cross section above scaled by BR(Z -> invisible) / BR(Z -> l l) = 20.00% / 10.10% (PDG)
z_nunu = od.Process(
    name="z_nunu",
    id=3000,
    xsecs={ECM: dy_lep_m50.get_xsec(ECM) * (0.2000 / 0.1010)},
    label=r"$Z \rightarrow \nu\nu$",
    color1="#9c9ca1",
)
