"""BG/NBD (Fader, Hardie & Lee 2005) by maximum likelihood, in numpy + scipy.

Used as the "P(alive)" churn baseline and as features of the churn model. The
`lifetimes` package is unmaintained, so the likelihood is written out here.

`variant="mbg"` is the MBG/NBD of Batislam, Denizel & Filiztekin (2007): a
customer may also drop out right after the first purchase, so one-time buyers
are not all assumed alive. The churn model uses both as features.

Each customer is summarised as (x, t_x, T) in weeks: x = repeat purchases (orders
after the first, counted on distinct days), t_x = time from the first to the last
purchase, T = time from the first purchase to the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, hyp2f1
from threadpoolctl import ThreadpoolController

DAYS_PER_WEEK = 7.0

_CONTROLLER: ThreadpoolController | None = None


def one_blas_thread():
    """A context that limits BLAS/OpenMP to one thread: the optimisers' tiny vector work
    only slows down when BLAS threads spin against other processes on a shared machine.

    One ThreadpoolController for the process: `threadpool_limits` rescans the loaded
    libraries on every call (~4 ms, more than a small store's whole fit); numpy and
    scipy load their BLAS at import, before the first fit."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


@dataclass(frozen=True)
class BgNbdParams:
    """Population parameters: purchase rate ~ Gamma(r, alpha); dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    n_customers: int
    converged: bool

    def as_dict(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


# A weak prior-free fallback when there is too little data to fit: about one
# purchase per half year, half of the customers dropping out after each purchase.
DEFAULT_PARAMS = BgNbdParams(r=0.5, alpha=13.0, a=1.0, b=1.0, n_customers=0, converged=False)


def _log_likelihood(log_params: np.ndarray, x, t_x, T, variant: str = "bg", weights=None) -> float:
    """Total log-likelihood; `weights` counts identical (x, t_x, T) rows."""
    r, alpha, a, b = np.exp(log_params)
    weights = np.ones_like(x) if weights is None else weights
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    if variant == "mbg":
        log_beta_ab = gammaln(a) + gammaln(b) - gammaln(a + b)
        alive = (
            gammaln(a)
            + gammaln(b + x + 1)
            - gammaln(a + b + x + 1)
            - log_beta_ab
            - (r + x) * np.log(alpha + T)
        )
        dead = (
            gammaln(a + 1)
            + gammaln(b + x)
            - gammaln(a + b + x + 1)
            - log_beta_ab
            - (r + x) * np.log(alpha + t_x)
        )
        return float(np.sum(weights * (a1 + np.logaddexp(alive, dead))))
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    # log(a) - log(b + x - 1) - (r + x) log(alpha + t_x), only defined for x > 0
    a4 = np.where(
        repeat,
        np.log(a) - np.log(np.maximum(b + x - 1, 1e-12)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    return float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def _neg_log_likelihood_and_gradient(
    log_params: np.ndarray,
    x,
    t_x,
    T,
    variant: str,
    weights: np.ndarray,
    x_unique: np.ndarray | None = None,
    x_index: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """-(total log-likelihood) and its gradient in (log r, log alpha, log a, log b).

    The same likelihood as _log_likelihood, differentiated by hand (digamma terms),
    so the optimiser needs one evaluation per step instead of five. With
    `x_unique`/`x_index` (x_unique[x_index] == x) the special functions, which depend
    on the customer only through x, are evaluated once per distinct x (the same
    numbers, in the same order of operations).
    """
    r, alpha, a, b = np.exp(log_params)

    def per_x(f):
        return f(x) if x_index is None else f(x_unique)[x_index]

    if variant == "mbg":
        total, d_r, d_alpha, d_a, d_b = _mbg_terms(r, alpha, a, b, x, t_x, T, x_unique, x_index)
    else:
        a1 = per_x(lambda v: gammaln(r + v) - gammaln(r)) + r * np.log(alpha)
        d_r = per_x(lambda v: digamma(r + v) - digamma(r)) + np.log(alpha)
        d_alpha = np.full_like(x, r / alpha)
        log_alpha_T = np.log(alpha + T)
        log_alpha_tx = np.log(alpha + t_x)
        a2 = per_x(lambda v: gammaln(a + b) + gammaln(b + v) - gammaln(b) - gammaln(a + b + v))
        a3 = -(r + x) * log_alpha_T
        repeat = x > 0
        b_x = np.maximum(b + x - 1, 1e-12)
        a4 = np.where(repeat, np.log(a) - np.log(b_x) - (r + x) * log_alpha_tx, -np.inf)
        mix = np.logaddexp(a3, a4)
        s3 = np.exp(a3 - mix)
        s4 = np.where(repeat, np.exp(a4 - mix), 0.0)
        psi_ab, psi_abx = digamma(a + b), per_x(lambda v: digamma(a + b + v))
        d_r = d_r - s3 * log_alpha_T - s4 * log_alpha_tx
        d_alpha = d_alpha - (r + x) * (s3 / (alpha + T) + s4 / (alpha + t_x))
        d_a = psi_ab - psi_abx + s4 / a
        d_b = per_x(lambda v: psi_ab + digamma(b + v) - digamma(b) - digamma(a + b + v)) - s4 / b_x
        total = a1 + a2 + mix
    value = float(np.sum(weights * total))
    gradient = np.array(
        [
            r * np.sum(weights * d_r),
            alpha * np.sum(weights * d_alpha),
            a * np.sum(weights * d_a),
            b * np.sum(weights * d_b),
        ]
    )
    return -value, -gradient


def fit(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    *,
    min_customers: int = 30,
    variant: str = "bg",
    resolution_weeks: float = 0.5,
    ridge: float = 1e-8,
) -> BgNbdParams:
    """Maximum-likelihood fit (L-BFGS-B on log parameters); deterministic.

    x, t_x, T: repeat purchases, weeks from first to last purchase, weeks from
    first purchase to the cutoff. Too few customers -> DEFAULT_PARAMS.
    """
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    if x.size < min_customers or not np.any(x > 0):
        return BgNbdParams(**{**DEFAULT_PARAMS.__dict__, "n_customers": int(x.size)})
    # Average the likelihood so the optimiser's tolerances do not depend on n.
    n_customers = int(x.size)
    n = float(n_customers)
    mean_rate = (x.sum() + 1.0) / max(T.sum(), 1.0)
    # Summaries rounded to `resolution_weeks` are evaluated once per distinct row and
    # weighted by their count: the population parameters barely move (the
    # per-customer probabilities later use the exact values) and the fit is ~10x faster.
    # One int64 key per customer (a 1-D unique is far faster than unique rows).
    x_int = np.rint(x).astype(np.int64)
    tx_bin = np.rint(t_x / resolution_weeks).astype(np.int64)
    T_bin = np.rint(T / resolution_weeks).astype(np.int64)
    if not np.array_equal(x_int, x) or min(tx_bin.min(), T_bin.min(), x_int.min()) < 0:
        raise ValueError("x must be whole repeat counts and t_x, T non-negative weeks")
    span_tx, span_T = int(tx_bin.max()) + 1, int(T_bin.max()) + 1
    keys, first, counts = np.unique(
        (x_int * span_tx + tx_bin) * span_T + T_bin, return_index=True, return_counts=True
    )
    del keys
    x = x_int[first].astype(float)
    t_x = tx_bin[first] * resolution_weeks
    T = T_bin[first] * resolution_weeks
    weights = counts.astype(float)

    def objective(log_params):
        value = -_log_likelihood(log_params, x, t_x, T, variant, weights) / n
        # A tiny ridge on log-parameters keeps a, b finite when the data cannot
        # separate "never drops out" from "drops out very rarely" (small enough to
        # leave identified parameters where the likelihood puts them).
        return value + ridge * float(np.sum(log_params**2))

    x_unique, x_index = np.unique(x, return_inverse=True)

    def objective_and_gradient(log_params):
        value, gradient = _neg_log_likelihood_and_gradient(
            log_params, x, t_x, T, variant, weights, x_unique, x_index
        )
        if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
            return np.inf, np.zeros(4)
        return (
            value / n + ridge * float(np.sum(log_params**2)),
            gradient / n + 2 * ridge * log_params,
        )

    start = np.log([1.0, 1.0 / mean_rate, 1.0, 3.0])
    best = None
    # One BLAS thread: the optimiser's tiny vector work only slows down when BLAS
    # threads spin against other processes on a shared machine.
    with one_blas_thread():
        for method in ("L-BFGS-B", "Nelder-Mead"):
            analytic = method == "L-BFGS-B"
            result = minimize(
                objective_and_gradient if analytic else objective,
                start,
                jac=analytic,
                method=method,
                bounds=[(-8.0, 8.0)] * 4 if method == "L-BFGS-B" else None,
                options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-8}
                if analytic
                else {"maxiter": 2000},
            )
            if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
                best = result
            if best is not None and best.success:
                break
    if best is None or not np.isfinite(best.fun):
        return BgNbdParams(**{**DEFAULT_PARAMS.__dict__, "n_customers": n_customers})
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    return BgNbdParams(r, alpha, a, b, n_customers=n_customers, converged=bool(best.success))


def p_alive(params: BgNbdParams, x, t_x, T, variant: str = "bg") -> np.ndarray:
    """P(the customer has not dropped out by the cutoff | x, t_x, T)."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    # log of a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x); computed in logs to avoid overflow
    shift = 0.0 if variant == "mbg" else 1.0
    log_ratio = (
        np.log(a)
        - np.log(np.maximum(b + x - shift, 1e-12))
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    out = 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700.0)))
    return out if variant == "mbg" else np.where(x > 0, out, 1.0)


def p_no_purchase(
    params: BgNbdParams, x, t_x, T, horizon_weeks: float, variant: str = "bg"
) -> np.ndarray:
    """P(no purchase in (T, T + horizon] | x, t_x, T).

    Dead customers never buy; an alive customer's rate has the posterior
    Gamma(r + x, alpha + T), so P(no purchase | alive) = ((alpha+T)/(alpha+T+h))^(r+x).
    """
    x = np.asarray(x, dtype=float)
    T = np.asarray(T, dtype=float)
    alive = p_alive(params, x, t_x, T, variant)
    quiet_if_alive = np.exp(
        (params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + horizon_weeks))
    )
    return 1.0 - alive + alive * quiet_if_alive


def expected_purchases(params: BgNbdParams, x, t_x, T, horizon_weeks: float) -> np.ndarray:
    """Expected purchases in (T, T + horizon], approximated as P(alive) x posterior rate x h.

    (The exact form needs a Gauss hypergeometric function that is unstable for
    a < 1; this first-order form ranks customers the same way for short horizons.)
    """
    x = np.asarray(x, dtype=float)
    T = np.asarray(T, dtype=float)
    rate = (params.r + x) / (params.alpha + T)
    return p_alive(params, x, t_x, T) * rate * horizon_weeks


# ----------------------------------------------------------------- with covariates


@dataclass(frozen=True)
class CovariateParams:
    """MBG/NBD whose customers differ by observed covariates z (Fader & Hardie 2007,
    "Incorporating time-invariant covariates into the Pareto/NBD and BG/NBD models"):
    customer i's purchase rate ~ Gamma(r, alpha exp(-z_i . rate_effects)) and dropout
    p_i ~ Beta with mean sigmoid(logit_dropout + z_i . dropout_effects) and a + b =
    concentration. Without covariates (or all effects zero) it is the plain MBG/NBD."""

    r: float
    alpha: float
    logit_dropout: float
    concentration: float
    rate_effects: tuple[float, ...]
    dropout_effects: tuple[float, ...]
    n_customers: int
    converged: bool

    def per_customer(self, z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(r, alpha_i, a_i, b_i) for covariate rows z (n x k)."""
        z = np.asarray(z, dtype=float).reshape(len(z), -1)
        alpha = self.alpha * np.exp(-(z @ np.asarray(self.rate_effects, dtype=float)))
        mean = 1.0 / (
            1.0 + np.exp(-(self.logit_dropout + z @ np.asarray(self.dropout_effects, dtype=float)))
        )
        return self.r, alpha, mean * self.concentration, (1.0 - mean) * self.concentration


def _mbg_terms(r, alpha, a, b, x, t_x, T, x_unique=None, x_index=None):
    """Per-customer MBG/NBD log-likelihood and its partial derivatives in r, alpha, a, b
    (the same likelihood as _log_likelihood(variant='mbg'), parameters per customer).
    With scalar a and b, `x_unique`/`x_index` (x_unique[x_index] == x) evaluate the
    special functions once per distinct x, in the same order of operations (the same
    numbers)."""

    def per_x(f):
        return f(x) if x_index is None else f(x_unique)[x_index]

    log_alpha_T, log_alpha_tx = np.log(alpha + T), np.log(alpha + t_x)
    log_beta_ab = gammaln(a) + gammaln(b) - gammaln(a + b)
    alive = per_x(lambda v: gammaln(a) + gammaln(b + v + 1) - gammaln(a + b + v + 1) - log_beta_ab)
    dead = per_x(lambda v: gammaln(a + 1) + gammaln(b + v) - gammaln(a + b + v + 1) - log_beta_ab)
    alive = alive - (r + x) * log_alpha_T
    dead = dead - (r + x) * log_alpha_tx
    mix = np.logaddexp(alive, dead)
    s_alive, s_dead = np.exp(alive - mix), np.exp(dead - mix)
    psi_ab, psi_tail = digamma(a + b), per_x(lambda v: digamma(a + b + v + 1))
    value = per_x(lambda v: gammaln(r + v) - gammaln(r)) + r * np.log(alpha) + mix
    d_r = (
        per_x(lambda v: digamma(r + v) - digamma(r))
        + np.log(alpha)
        - s_alive * log_alpha_T
        - s_dead * log_alpha_tx
    )
    d_alpha = r / alpha - (r + x) * (s_alive / (alpha + T) + s_dead / (alpha + t_x))
    d_a = s_alive * (psi_ab - psi_tail) + s_dead * (digamma(a + 1) - digamma(a) + psi_ab - psi_tail)
    d_b = (
        s_alive * per_x(lambda v: digamma(b + v + 1))
        + s_dead * per_x(lambda v: digamma(b + v))
        - psi_tail
        - digamma(b)
        + psi_ab
    )
    return value, d_r, d_alpha, d_a, d_b


def _mbg_terms_pooled(r, alpha, a, b, concentration, x, t_x, T, x_unique, x_index, repeat):
    """_mbg_terms when a + b is the same `concentration` for every row (the covariate
    MBG/NBD): what depends only on r, a + b and x is evaluated once per distinct x
    (x_unique[x_index] == x); log B(a, b) and lgamma(a + b + x + 1) reduce to
    lgamma(b + x) - lgamma(b) and a per-x term, which (with its digamma twin) is zero
    for one-time buyers, so it is evaluated on the repeat buyers' rows only (`repeat`:
    the rows with x > 0, as an index or slice); lgamma/digamma at z + 1 come from the
    recurrences. Equal to _mbg_terms to rounding (tests/test_clv.py)."""
    lgamma_rx = (gammaln(r + x_unique) - gammaln(r))[x_index]
    digamma_rx = (digamma(r + x_unique) - digamma(r))[x_index]
    tail = (gammaln(concentration + x_unique + 1) - gammaln(concentration))[x_index]
    psi_tail = (digamma(concentration + x_unique + 1) - digamma(concentration))[x_index]
    log_alpha_T, log_alpha_tx = np.log(alpha + T), np.log(alpha + t_x)
    bx = b + x
    # lgamma(b + x) - lgamma(b) and digamma(b + x) - digamma(b): zero where x = 0.
    lgamma_ratio, digamma_ratio = np.zeros_like(bx), np.zeros_like(bx)
    b_rep, bx_rep = b[repeat], bx[repeat]
    lgamma_ratio[repeat] = gammaln(bx_rep) - gammaln(b_rep)
    digamma_ratio[repeat] = digamma(bx_rep) - digamma(b_rep)
    common = lgamma_ratio - tail
    alive = common + np.log(bx) - (r + x) * log_alpha_T
    dead = common + np.log(a) - (r + x) * log_alpha_tx
    mix = np.logaddexp(alive, dead)
    s_alive, s_dead = np.exp(alive - mix), np.exp(dead - mix)
    log_alpha = np.log(alpha)
    value = lgamma_rx + r * log_alpha + mix
    d_r = digamma_rx + log_alpha - s_alive * log_alpha_T - s_dead * log_alpha_tx
    d_alpha = r / alpha - (r + x) * (s_alive / (alpha + T) + s_dead / (alpha + t_x))
    d_a = -psi_tail * (s_alive + s_dead) + s_dead / a
    d_b = digamma_ratio + s_alive / bx - psi_tail
    return value, d_r, d_alpha, d_a, d_b


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(rows, axis=0, return_counts=True) by a lexicographic sort of the
    columns: the same rows in the same order, without numpy's slow structured sort."""
    if rows.shape[0] == 0:
        return rows, np.zeros(0, dtype=np.int64)
    order = np.lexsort(rows.T[::-1])
    ordered = rows[order]
    first = np.ones(ordered.shape[0], dtype=bool)
    first[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    starts = np.flatnonzero(first)
    return ordered[starts], np.diff(np.append(starts, ordered.shape[0]))


def fit_covariates(
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    z: np.ndarray,
    *,
    min_customers: int = 200,
    prior_sd: float = 0.5,
    resolution_weeks: float = 0.5,
    base: BgNbdParams | None = None,
) -> CovariateParams:
    """Maximum likelihood of the covariate MBG/NBD (L-BFGS-B, analytic gradient).

    z: n x k covariates (binary indicators and centred continuous values). The effects
    have a Normal(0, prior_sd) prior (maximum a posteriori), so a covariate the data
    cannot identify, or a small store, stays near the plain MBG/NBD. Too few customers, or no covariates -> the plain MBG/NBD
    fit with zero effects. Identical (x, t_x, T, z) rows, after rounding t_x and T to
    `resolution_weeks`, are evaluated once and weighted by their count. `base`: the
    plain MBG/NBD fit(x, t_x, T, variant="mbg", resolution_weeks=resolution_weeks) when
    the caller already has it (the starting point; refitted when None)."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    z = np.asarray(z, dtype=float).reshape(x.size, -1)
    k = z.shape[1]
    if base is None:
        base = fit(x, t_x, T, variant="mbg", resolution_weeks=resolution_weeks)
    mean0 = base.a / (base.a + base.b)
    start = CovariateParams(
        base.r,
        base.alpha,
        float(np.log(mean0 / (1 - mean0))),
        base.a + base.b,
        (0.0,) * k,
        (0.0,) * k,
        int(x.size),
        base.converged,
    )
    if k == 0 or x.size < min_customers or not base.converged:
        return start
    rows = np.column_stack(
        [x, np.rint(t_x / resolution_weeks), np.rint(T / resolution_weeks), np.round(z, 2)]
    )
    unique, counts = _unique_rows(rows)
    # Contiguous columns: the objective's elementwise work runs on them every step.
    ux, utx, uT = (
        np.ascontiguousarray(unique[:, 0]),
        unique[:, 1] * resolution_weeks,
        unique[:, 2] * resolution_weeks,
    )
    uz, weights = np.ascontiguousarray(unique[:, 3:]), counts.astype(float)
    x_unique, x_index = np.unique(ux, return_inverse=True)
    repeat = slice(int(np.searchsorted(ux, 0.5)), None)  # rows are sorted by x first
    n = float(x.size)
    ridge = 1.0 / (2.0 * prior_sd**2 * n)  # the prior's share of the averaged likelihood

    def objective(theta):
        log_r, log_alpha, logit_m, log_k = theta[:4]
        rate_fx, drop_fx = theta[4 : 4 + k], theta[4 + k :]
        r, concentration = np.exp(log_r), np.exp(log_k)
        alpha = np.exp(log_alpha - uz @ rate_fx)
        mean = 1.0 / (1.0 + np.exp(-(logit_m + uz @ drop_fx)))
        a, b = mean * concentration, (1.0 - mean) * concentration
        value, d_r, d_alpha, d_a, d_b = _mbg_terms_pooled(
            r, alpha, a, b, concentration, ux, utx, uT, x_unique, x_index, repeat
        )
        if not np.all(np.isfinite(value)):
            return np.inf, np.zeros_like(theta)
        w = weights / n
        g_alpha = w * d_alpha * alpha
        g_mean = w * (d_a - d_b) * concentration * mean * (1.0 - mean)
        gradient = np.concatenate(
            [
                [
                    r * np.sum(w * d_r),
                    np.sum(g_alpha),
                    np.sum(g_mean),
                    np.sum(w * (d_a * a + d_b * b)),
                ],
                -(uz.T @ g_alpha),
                uz.T @ g_mean,
            ]
        )
        effects = theta[4:]
        loss = -float(np.sum(w * value)) + ridge * float(effects @ effects)
        gradient = -gradient
        gradient[4:] += 2 * ridge * effects
        gradient[:4] += 2e-4 * theta[:4]
        return loss + 1e-4 * float(theta[:4] @ theta[:4]), gradient

    theta0 = np.concatenate(
        [
            [
                np.log(start.r),
                np.log(start.alpha),
                start.logit_dropout,
                np.log(start.concentration),
            ],
            np.zeros(2 * k),
        ]
    )
    with one_blas_thread():
        result = minimize(
            objective,
            theta0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(-8.0, 8.0)] * 4 + [(-5.0, 5.0)] * (2 * k),
            options={"maxiter": 500},
        )
    if not np.isfinite(result.fun):
        return start
    theta = result.x
    return CovariateParams(
        float(np.exp(theta[0])),
        float(np.exp(theta[1])),
        float(theta[2]),
        float(np.exp(theta[3])),
        tuple(float(v) for v in theta[4 : 4 + k]),
        tuple(float(v) for v in theta[4 + k :]),
        int(x.size),
        bool(result.success),
    )


def covariate_probabilities(
    params: CovariateParams, x, t_x, T, z, horizon_weeks: float
) -> tuple[np.ndarray, np.ndarray]:
    """(P(alive), P(no purchase in (T, T + horizon])) per customer under the covariate
    MBG/NBD (the MBG/NBD formulas with each customer's own alpha, a and b)."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    r, alpha, a, b = params.per_customer(z)
    log_ratio = (
        np.log(a)
        - np.log(np.maximum(b + x, 1e-12))
        + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    )
    alive = 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700.0)))
    quiet_if_alive = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + horizon_weeks)))
    return alive, 1.0 - alive + alive * quiet_if_alive


# ------------------------------------------------ exact expectations, Gamma-Gamma spend


def _log_hyp2f1(a, b, c, z):
    """log 2F1(a, b; c; z), by Euler's transformation where 2F1 itself overflows (the
    fallback `lifetimes` uses); the transformation is evaluated only there."""
    a, b, c, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, b, c, z)))
    with np.errstate(all="ignore"):
        out = np.array(np.log(hyp2f1(a, b, c, z)), dtype=float)
        bad = ~np.isfinite(out)
        if bad.any():
            a, b, c, z = a[bad], b[bad], c[bad], z[bad]
            out[bad] = np.log(hyp2f1(c - a, c - b, c, z)) + (c - a - b) * np.log1p(-z)
    return out


def conditional_expected_purchases(
    params: BgNbdParams, x, t_x, T, horizon_weeks: float
) -> np.ndarray:
    """E[purchases in (T, T + horizon] | x, t_x, T] under BG/NBD, the exact form of
    Fader, Hardie & Lee (2005, eq. 10) with the Gauss hypergeometric function (the
    same expression `lifetimes` evaluates)."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    t = float(horizon_weeks)
    big_a, big_b, big_c = r + x, b + x, a + b + x - 1
    z = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        log_hyp = _log_hyp2f1(big_a, big_b, big_c, z)
        first = (a + b + x - 1) / (a - 1)
        second = 1.0 - np.exp(log_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T)))
        denominator = 1.0 + (x > 0) * (a / np.maximum(b + x - 1, 1e-12)) * (
            (alpha + T) / (alpha + t_x)
        ) ** (r + x)
        out = first * second / denominator
    # Where even the alternative fails (extreme parameters), the first-order form.
    fallback = expected_purchases(params, x, t_x, T, horizon_weeks)
    return np.where(np.isfinite(out) & (out >= 0), out, fallback)


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per transaction ~ Gamma(p, nu), nu ~ Gamma(q, v) across customers
    (Fader, Hardie & Lee 2005, "RFM and CLV"); mean spend = p v / (q - 1)."""

    p: float
    q: float
    v: float
    n_customers: int
    converged: bool

    @property
    def population_mean(self) -> float:
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else float("nan")


def _gamma_gamma_nll_and_gradient(
    log_params: np.ndarray, x: np.ndarray, m: np.ndarray
) -> tuple[float, np.ndarray]:
    """_gamma_gamma_nll and its gradient in the log parameters (analytic)."""
    p, q, v = np.exp(log_params)
    px = p * x
    log_xm_v = np.log(x * m + v)
    psi_pxq = digamma(px + q)
    ll = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_xm_v
    )
    d_p = x * (psi_pxq - digamma(px) + np.log(m) + np.log(x) - log_xm_v)
    d_q = psi_pxq - digamma(q) + np.log(v) - log_xm_v
    d_v = q / v - (px + q) / (x * m + v)
    gradient = -np.array([np.mean(d_p) * p, np.mean(d_q) * q, np.mean(d_v) * v])
    return -float(np.mean(ll)), gradient


def _gamma_gamma_nll(log_params: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
    p, q, v = np.exp(log_params)
    ll = (
        gammaln(p * x + q)
        - gammaln(p * x)
        - gammaln(q)
        + q * np.log(v)
        + (p * x - 1) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(x * m + v)
    )
    return -float(np.mean(ll))


def fit_gamma_gamma(
    x: np.ndarray, m: np.ndarray, *, min_customers: int = 10
) -> GammaGammaParams | None:
    """Maximum likelihood on customers with at least one repeat transaction (x >= 1)
    and a positive mean repeat spend m; None when fewer than `min_customers` qualify."""
    x = np.asarray(x, dtype=float)
    m = np.asarray(m, dtype=float)
    keep = (x >= 1) & np.isfinite(m) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size < min_customers:
        return None
    start = np.log([1.0, 2.0, max(float(np.mean(m)), 1e-3)])
    with one_blas_thread():
        result = minimize(
            _gamma_gamma_nll_and_gradient,
            start,
            args=(x, m),
            jac=True,
            method="L-BFGS-B",
            bounds=[(-10.0, 10.0)] * 3,
        )
    p, q, v = (float(value) for value in np.exp(result.x))
    if not np.isfinite(result.fun) or q <= 1.0:
        return None
    return GammaGammaParams(p, q, v, int(x.size), bool(result.success))


def expected_spend(params: GammaGammaParams | None, x, m, fallback_mean: float) -> np.ndarray:
    """E[spend per transaction | x repeat transactions with mean m]: the Gamma-Gamma
    posterior mean, a weighted average of the population mean and the customer's own;
    customers without a repeat purchase get the population mean. Without a fit
    (too few repeat buyers) the customer's own mean where known, else `fallback_mean`."""
    x = np.asarray(x, dtype=float)
    m = np.asarray(m, dtype=float)
    known = (x >= 1) & np.isfinite(m) & (m > 0)
    if params is None:
        return np.where(known, m, fallback_mean)
    p, q, v = params.p, params.q, params.v
    posterior = p * (v + x * np.where(known, m, 0.0)) / (p * x + q - 1.0)
    return np.where(known, posterior, params.population_mean)


def covariate_expected_purchases(
    params: CovariateParams, x, t_x, T, z, horizon_weeks: float
) -> np.ndarray:
    """E[purchases in (T, T + horizon] | x, t_x, T] under the covariate MBG/NBD: the
    MBG/NBD form of Batislam et al. (2007) with each customer's own alpha, a and b."""
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    r, alpha, a, b = params.per_customer(z)
    t = float(horizon_weeks)
    big_a, big_b, big_c = r + x, b + x + 1, a + b + x
    zz = t / (alpha + T + t)
    with np.errstate(all="ignore"):
        log_hyp = _log_hyp2f1(big_a, big_b, big_c, zz)
        first = (a + b + x) / (a - 1)
        second = 1.0 - np.exp(log_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T)))
        denominator = 1.0 + (a / (b + x)) * ((alpha + T) / (alpha + t_x)) ** (r + x)
        out = first * second / denominator
    alive, _ = covariate_probabilities(params, x, t_x, T, z, horizon_weeks)
    fallback = alive * (r + x) / (alpha + T) * t
    return np.where(np.isfinite(out) & (out >= 0), out, fallback)
