"""The verdict's rules one by one, on trials tables built the way a study builds them (`runfolder.py`:
final-run configs from `search.final_runs` / `baseline_runs`, Tune results as `trial._final_run` reports
them, and `tables.tables_from_rows` making the table). Each test sets up a case where a plausible slip in
`verdict.py` or `paired.py` changes the answer (the order inside the top group, excluded arms, the leader's
tie-break, the 3-seed minimum, the headline's sentences, a missing baseline, per-example values of unequal
length, the zero-variance and 1-seed paths, the bootstrap)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from runfolder import EPOCHS, SEED, SPE, study_tables
from scipy import stats

from sched_search.config import BASELINE_ARM
from sched_search.results.attribution import attribution, attribution_lines
from sched_search.results.paired import (
    ALPHA,
    bootstrap_weights,
    holm,
    holm_family,
    paired_difference,
    resampled_means,
)
from sched_search.results.snippet import NO_WINNER, recommend
from sched_search.results.verdict import decide, difference_text, metric_text, speedup_text
from sched_search.study.space import build_space


def _right(n: int, k: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """n examples, k of them right (the first k, or k at random places with `rng`)."""
    right = np.zeros(n)
    right[(rng.permutation(n) if rng is not None else np.arange(n))[:k]] = 1.0
    return right


def _study(
    arms: dict[str, dict[float, list[np.ndarray]]],
    loss: dict[str, float] | None = None,
    died: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """The trials table of a study's runs (`runfolder.study_tables`), and its final re-runs' configs
    (final_configs.json).

    `arms`: arm -> budget -> per-seed vectors of per-example values; `loss`: an arm's final val loss (default
    1 - its mean); `died`: arm -> the budget at which every seed's run raised (that budget and later ones are
    left without results, as a worker's error leaves them).
    """
    _, _, trials, _, configs = study_tables(arms, loss, died)
    return trials, configs


# ----------------------------------------------------------------------------------- the top group's order


def _three_tied(n_seeds: int = 3) -> dict[str, dict[float, list[np.ndarray]]]:
    """Three arms with the same values on every example at the full budget (a tie nothing can break but the
    order rule), reaching the baseline's mean at different rungs; alphabetical order is not the rule's."""
    rng = np.random.default_rng(0)
    n = 200
    full = [_right(n, 180)] * n_seeds
    return {
        "clr-sgdw": {0.25: [_right(n, 100)] * n_seeds, 0.5: [_right(n, 170)] * n_seeds, 1.0: full},
        "one_cycle-sgdw": {0.25: [_right(n, 110)] * n_seeds, 0.5: [_right(n, 170)] * n_seeds, 1.0: full},
        "sgdr-sgdw": {0.25: [_right(n, 165)] * n_seeds, 0.5: [_right(n, 170)] * n_seeds, 1.0: full},
        BASELINE_ARM: {1.0: [_right(n, 150, rng) for _ in range(n_seeds)]},
    }


def test_no_winner_top_group_is_ordered_by_epochs_to_target_then_val_loss() -> None:
    """sgdr reaches the target at 2 epochs, the others at 4; of those two, one_cycle has the lower val loss.
    The first of that order is what the closing block and the snippet recommend."""
    loss = {"clr-sgdw": 0.40, "one_cycle-sgdw": 0.30, "sgdr-sgdw": 0.50, BASELINE_ARM: 0.6}
    trials, configs = _study(_three_tied(), loss=loss)
    v = decide(trials)
    assert v["winner"] is None
    assert v["top_group"] == ["sgdr-sgdw", "one_cycle-sgdw", "clr-sgdw"]
    assert v["speedup"]["sgdr-sgdw"]["epochs_to_target"] == 2.0
    assert v["headline"].startswith("No clear winner: sgdr-sgdw, one_cycle-sgdw, clr-sgdw cannot be told")
    # the recommended arm is also the fastest: no second sentence about speed
    assert "sgdr-sgdw reaches the target" in v["headline"] and "Fastest" not in v["headline"]
    rec = recommend(v, configs, SPE)
    assert (rec.arm, rec.why) == ("sgdr-sgdw", NO_WINNER)
    assert rec.config["seed"] == 0 and rec.config["arm"] == "sgdr-sgdw"


def test_leader_tie_break_is_the_lower_val_loss() -> None:
    """Equal means: the leader is the arm with the lower mean val loss, whichever that is."""
    arms = _three_tied()
    for low in ("clr-sgdw", "sgdr-sgdw"):
        loss = {a: 0.5 for a in arms} | {low: 0.1}
        assert decide(_study(arms, loss=loss)[0])["leader"] == low


def test_an_arm_with_no_full_budget_run_is_excluded_with_why() -> None:
    arms = _three_tied()
    trials, _ = _study(arms, died={"clr-sgdw": 1.0})  # every seed raised in its full-budget run
    assert set(trials.loc[trials.arm == "clr-sgdw", "status"]) == {"ok", "error"}
    v = decide(trials)
    assert v["excluded"] == {"clr-sgdw": "no final run finished at the full budget"}
    assert "clr-sgdw" not in v["arms"] and "clr-sgdw" not in v["top_group"]
    assert "clr-sgdw" not in v["speedup"] and v["top_group"] == ["sgdr-sgdw", "one_cycle-sgdw"]


# ----------------------------------------------------------------------------------- fewer than 3 seeds


def test_two_seeds_give_no_speedups_no_winner_and_no_calls() -> None:
    """The 3-seed version of the same study has speed-ups (so the 2-seed result is the rule, not the data)."""
    three = decide(_study(_three_tied(3))[0])
    assert three["speedup"]["sgdr-sgdw"]["estimate"] == pytest.approx(EPOCHS / 2)
    assert "No arm is better" not in three["headline"]
    two = decide(_study(_three_tied(2))[0])
    assert two["n_seeds"] == 2 and two["speedup"] == {} and two["winner"] is None
    assert two["better_than_baseline"] == [] and two["worse_than_baseline"] == []
    assert {a["vs_baseline"]["call"] for a in two["arms"].values() if "vs_baseline" in a} == {"not estimable"}
    assert "sooner" not in two["headline"] and "No arm is better" not in two["headline"]
    assert all(a["ci_low"] is None and a["std_over_seeds"] is None for a in two["arms"].values())


def test_with_two_seeds_a_baseline_at_chance_is_judged_by_its_mean() -> None:
    """No interval with 2 seeds: whether the baseline beat chance is read from its mean (0.75 here)."""
    two = _study(_three_tied(2))[0]
    assert decide(two, chance_accuracy=0.7)["target_meaningful"] is True
    v = decide(two, chance_accuracy=0.75)
    assert v["target_meaningful"] is False and "is not better than chance" in v["headline"]


def test_one_seed_compares_nothing() -> None:
    v = decide(_study(_three_tied(1))[0])
    assert v["n_seeds"] == 1 and v["winner"] is None and v["speedup"] == {}
    lead = v["arms"][BASELINE_ARM]["vs_leader"]
    assert (
        lead["diff"] == pytest.approx(0.15)
        and lead["p"] is None
        and lead["ci_low"] is None
        and lead["p_holm"] is None
    )


# ----------------------------------------------------------------------------------- the headline


def test_no_arm_better_than_the_baseline_is_said() -> None:
    """Arms within noise of the baseline, 3 seeds: every call is "equal" and the headline says so."""
    rng = np.random.default_rng(1)
    n = 300
    arms = {
        a: {1.0: [_right(n, k, rng) for k in ks]}
        for a, ks in {
            "clr-adamw": (200, 204, 199),
            "sgdr-adamw": (201, 198, 203),
            BASELINE_ARM: (202, 200, 199),
        }.items()
    }
    v = decide(_study(arms)[0])
    assert {v["arms"][a]["vs_baseline"]["call"] for a in ("clr-adamw", "sgdr-adamw")} == {"equal"}
    assert f"No arm is better than {BASELINE_ARM}." in v["headline"]
    assert "Better than" not in v["headline"]


def test_fastest_to_the_target_names_an_arm_outside_the_top_group() -> None:
    """The leader reaches the target at 4 epochs; a clearly worse arm reaches it at 1 epoch: the headline
    gives the leader's speed-up and names the faster arm."""
    rng = np.random.default_rng(2)
    n = 1000
    arms = {
        "one_cycle-sgdw": {
            0.125: [_right(n, k, rng) for k in (500, 505, 510)],
            0.5: [_right(n, k, rng) for k in (700, 705, 710)],
            1.0: [_right(n, k, rng) for k in (900, 905, 910)],
        },
        "clr-sgdw": {
            0.125: [_right(n, k, rng) for k in (650, 655, 660)],
            0.5: [_right(n, k, rng) for k in (680, 685, 690)],
            1.0: [_right(n, k, rng) for k in (700, 705, 710)],
        },
        BASELINE_ARM: {1.0: [_right(n, k, rng) for k in (595, 600, 605)]},
    }
    v = decide(_study(arms)[0])
    assert v["winner"] == "one_cycle-sgdw" and v["top_group"] == ["one_cycle-sgdw"]
    target = metric_text(np.mean([595, 600, 605]) / n, "accuracy")
    assert f"one_cycle-sgdw reaches the target (val accuracy {target}) 2x" in v["headline"]
    assert f"Fastest to the target (val accuracy {target}): clr-sgdw, >= 8x" in v["headline"]
    assert v["speedup"]["clr-sgdw"]["lower_bound"] and not v["speedup"]["one_cycle-sgdw"]["lower_bound"]


def test_without_a_baseline_there_is_no_target_and_no_calls() -> None:
    arms = {a: r for a, r in _three_tied().items() if a != BASELINE_ARM}
    trials, _ = _study(arms)
    v = decide(trials)
    assert v["target"] is None and v["target_source"] is None and v["speedup"] == {}
    assert v["better_than_baseline"] == [] and all("vs_baseline" not in a for a in v["arms"].values())
    assert BASELINE_ARM not in v["headline"] and "sooner" not in v["headline"]
    assert v["top_group"] == sorted(arms) and v["leader"] in arms  # all tied, no target: names decide
    # a study target without a baseline run: the target stands, speed-ups have no reference
    study = decide(trials, target=0.8)
    assert study["target"] == 0.8 and study["target_source"] == "the study's target"
    assert study["speedup"] == {}


def test_per_example_values_of_unequal_length_pair_by_seed_only() -> None:
    rng = np.random.default_rng(3)
    arms = {
        "clr-adamw": {1.0: [_right(200, k, rng) for k in (180, 182, 181)]},
        BASELINE_ARM: {1.0: [_right(199, k, rng) for k in (150, 151, 149)]},
    }
    v = decide(_study(arms)[0])
    assert v["paired_by_example"] is False and v["eval_examples"] is None
    assert v["arms"]["clr-adamw"]["mean"] == pytest.approx(np.mean([180, 182, 181]) / 200)
    assert v["arms"][BASELINE_ARM]["mean"] == pytest.approx(np.mean([150, 151, 149]) / 199)
    assert "paired by seed only" in v["rule"]


# ----------------------------------------------------------------------------------- paired.py's edges


def test_zero_variance_difference() -> None:
    """Identical runs: no difference, p = 1; one always right where the other is always wrong: p = 0. Both
    with the interval collapsed on the difference."""
    ones, zeros = np.ones((3, 20)), np.zeros((3, 20))
    same = paired_difference(ones, ones)
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p"]) == (0.0, 0.0, 0.0, 1.0)
    apart = paired_difference(ones, zeros)
    assert (apart["diff"], apart["ci_low"], apart["ci_high"], apart["p"]) == (1.0, 1.0, 1.0, 0.0)
    assert apart["df"] == math.inf


def test_one_seed_difference_is_not_estimable() -> None:
    rng = np.random.default_rng(4)
    c = paired_difference(rng.random((1, 30)), rng.random((1, 30)))
    assert math.isfinite(c["diff"])
    assert all(math.isnan(c[k]) for k in ("ci_low", "ci_high", "p", "df"))


def test_bootstrap_resamples_seeds_and_examples_with_replacement() -> None:
    s, n, draws = 3, 7, 500
    seed_w, example_w = bootstrap_weights(s, n, draws)
    assert seed_w.shape == (draws, s) and example_w.shape == (draws, n)
    assert (seed_w.sum(1) == s).all() and (example_w.sum(1) == n).all()
    assert (seed_w >= 0).all() and (example_w >= 0).all() and (seed_w != 1).any() and (example_w != 1).any()
    again = bootstrap_weights(s, n, draws)
    assert (again[0] == seed_w).all() and (again[1] == example_w).all()  # seeded: one answer per study
    assert not (bootstrap_weights(s, n, draws, seed=1)[1] == example_w).all()
    # every seed and example equally likely: each count averages 1 over the draws
    assert seed_w.mean(0) == pytest.approx(np.ones(s), abs=0.15)
    assert example_w.mean(0) == pytest.approx(np.ones(n), abs=0.2)
    matrix = np.random.default_rng(5).random((s, n))
    means = resampled_means(matrix, seed_w, example_w)
    by_hand = [
        np.repeat(np.repeat(matrix, seed_w[d], axis=0), example_w[d].astype(int), axis=1).mean()
        for d in range(draws)
    ]
    assert means == pytest.approx(by_hand)


def test_mean_intervals_are_the_bootstrap_percentiles() -> None:
    trials, _ = _study(_three_tied())
    v = decide(trials)
    full = np.stack([_right(200, 180)] * 3)
    seed_w, example_w = bootstrap_weights(3, 200)
    boot = resampled_means(full, seed_w, example_w)
    a = v["arms"]["clr-sgdw"]
    assert a["ci_low"] == pytest.approx(np.percentile(boot, 2.5))
    assert a["ci_high"] == pytest.approx(np.percentile(boot, 97.5))
    assert a["ci_low"] < a["mean"] < a["ci_high"]


# ----------------------------------------------------------------------------------- several baselines

SEARCHED = ("one_cycle-sgdw", "clr-sgdw")
ADAMW_COSINE, SCHEDULE_FREE = "default:adamw-cosine", "default:schedule_free"


def _with_baselines(searched: dict[str, tuple[int, ...]], sf: tuple[int, ...], n: int = 400, seed: int = 0):
    """Two searched arms and the three baselines (constant Adam ~50%, AdamW + cosine ~60%, Schedule-Free
    `sf`), full budget only, 3 seeds; correct examples at random places."""
    rng = np.random.default_rng(seed)
    counts = {
        **searched,
        BASELINE_ARM: (200, 204, 198),
        ADAMW_COSINE: (240, 236, 244),
        SCHEDULE_FREE: sf,
    }
    return {a: {1.0: [_right(n, k, rng) for k in ks]} for a, ks in counts.items()}


def test_several_baselines_are_one_family_holm_over_every_comparison() -> None:
    """2 searched arms x 3 baselines: Holm over all six. clr-sgdw beats Schedule-Free at p < 0.05 on its own,
    but not after the correction over six: "equal"."""
    arms = _with_baselines({"one_cycle-sgdw": (288, 280, 284), "clr-sgdw": (298, 304, 296)}, (282, 290, 280))
    v = decide(_study(arms)[0])
    baselines = [SCHEDULE_FREE, ADAMW_COSINE, BASELINE_ARM]  # strongest first
    assert v["baselines"] == baselines and v["n_baseline_comparisons"] == 6
    raw = {(a, b): v["arms"][a]["vs_baselines"][b]["p"] for a in SEARCHED for b in baselines}
    adjusted = holm(raw)
    for (a, b), p in adjusted.items():
        c = v["arms"][a]["vs_baselines"][b]
        assert c["p_holm"] == pytest.approx(p)
        assert c["call"] == ("equal" if p >= ALPHA else ("better" if c["diff"] > 0 else "worse"))
    close = v["arms"]["clr-sgdw"]["vs_baselines"][SCHEDULE_FREE]
    assert close["p"] < ALPHA <= close["p_holm"] and close["call"] == "equal"
    assert v["arms"]["clr-sgdw"]["vs_baselines"][BASELINE_ARM]["call"] == "better"
    # each interval at its Holm step's level, alpha / (6 - rank): every call's interval excludes 0
    for rank, (a, b) in enumerate(sorted(raw, key=raw.get)):
        c = v["arms"][a]["vs_baselines"][b]
        at = paired_difference(np.stack(arms[a][1.0]), np.stack(arms[b][1.0]), ALPHA / (6 - rank), True)
        assert (c["ci_low"], c["ci_high"]) == pytest.approx((at["ci_low"], at["ci_high"])), (a, b)
        assert c["call"] == "equal" or not c["ci_low"] <= 0 <= c["ci_high"], (a, b)
    assert close["ci_low"] < 0 < close["ci_high"]
    assert v["better_than_every_baseline"] == []  # neither beats Schedule-Free after the correction
    assert v["baseline"] == SCHEDULE_FREE and v["better_than_baseline"] == []
    assert v["baseline_wins"] is None and v["recommended"] == v["leader"] == "clr-sgdw"
    assert "Holm over all 6 such comparisons" in v["rule"]


def test_a_baseline_the_leader_is_called_better_than_is_not_in_the_top_group() -> None:
    """The default study of 2026-12-02 (per-seed counts of 1,500 validation examples; correct ones at random
    places): the leader against Schedule-Free has p 0.009, which Holm over the leader's 8 comparisons
    (rank 2, x6) leaves in the top group and Holm over the 18 baseline comparisons calls "better". The top
    group drops it, so the answer never lists a baseline as tied with the leader beside calls that beat it."""
    counts = {
        "clr-adamw": (1441, 1439, 1442),
        "clr-sgdw": (1433, 1408, 1431),
        "one_cycle-adamw": (1446, 1452, 1434),
        "one_cycle-sgdw": (1448, 1432, 1431),
        "sgdr-adamw": (1415, 1388, 1405),
        "sgdr-sgdw": (1424, 1395, 1379),
        BASELINE_ARM: (760, 756, 789),
        ADAMW_COSINE: (896, 881, 911),
        SCHEDULE_FREE: (1120, 1058, 1180),
    }
    rng = np.random.default_rng(0)
    v = decide(_study({a: {1.0: [_right(1500, k, rng) for k in ks]} for a, ks in counts.items()})[0])
    leader, sf = v["leader"], v["arms"][SCHEDULE_FREE]
    assert leader == "one_cycle-adamw"
    assert sf["vs_leader"]["p_holm"] >= ALPHA  # the leader's family alone would keep it
    assert v["arms"][leader]["vs_baselines"][SCHEDULE_FREE]["call"] == "better"
    assert SCHEDULE_FREE not in v["top_group"] and SCHEDULE_FREE in v["baselines"]
    assert set(v["top_group"]) == {a for a in counts if not a.startswith(("default:", "constant"))}
    assert "default:schedule_free cannot be told apart" not in v["headline"]
    assert v["better_than_every_baseline"] and v["recommended"] in v["top_group"]


def test_the_strongest_baseline_is_named_and_is_the_speedup_reference() -> None:
    """The strongest baseline (best mean in the study's direction) sets the target; constant Adam's target
    and speed-ups stay beside it in `vs_adam`."""
    arms = _with_baselines({"one_cycle-sgdw": (370, 372, 368), "clr-sgdw": (330, 334, 328)}, (282, 290, 280))
    arms["one_cycle-sgdw"][0.25] = [_right(400, k) for k in (300, 300, 300)]  # past Schedule-Free at 2 epochs
    arms["one_cycle-sgdw"][0.125] = [_right(400, k) for k in (250, 250, 250)]  # past Adam's 50% at 1 epoch
    trials, configs = _study(arms)
    v = decide(trials)
    sf_mean = np.mean([282, 290, 280]) / 400
    adam_mean = np.mean([200, 204, 198]) / 400
    assert v["strongest_baseline"] == v["baseline"] == SCHEDULE_FREE
    assert (
        v["target"] == pytest.approx(sf_mean)
        and "strongest baseline default:schedule_free" in v["target_source"]
    )
    assert (
        f"Strongest baseline: {SCHEDULE_FREE} (val accuracy {metric_text(sf_mean, 'accuracy')})."
        in v["headline"]
    )
    assert f"sooner than {SCHEDULE_FREE}." in v["headline"]
    assert v["better_than_every_baseline"] == ["clr-sgdw", "one_cycle-sgdw"]
    assert "Better than every baseline: clr-sgdw, one_cycle-sgdw." in v["headline"]
    assert v["speedup"]["one_cycle-sgdw"]["estimate"] == pytest.approx(EPOCHS / 2)
    adam = v["vs_adam"]
    assert adam["baseline"] == BASELINE_ARM and adam["target"] == pytest.approx(adam_mean)
    assert adam["speedup"]["one_cycle-sgdw"]["estimate"] == pytest.approx(EPOCHS / 1)
    # the same table read as "lower is better": the weakest recipe becomes the strongest baseline
    assert decide(trials, mode="min")["strongest_baseline"] == BASELINE_ARM
    # leaderboard: every baseline reads "baseline", searched arms carry the call against the strongest
    from sched_search.results.leaderboard import baseline_calls, build_leaderboard

    board = build_leaderboard(trials, pd.DataFrame(), v).set_index("arm")
    assert set(board.loc[[BASELINE_ARM, ADAMW_COSINE, SCHEDULE_FREE], "vs_baseline"]) == {"baseline"}
    assert board.loc["clr-sgdw", "vs_baseline"] == "better"
    calls = baseline_calls(v).set_index("arm")
    assert list(calls.columns) == [SCHEDULE_FREE, ADAMW_COSINE, BASELINE_ARM]
    assert calls.loc["one_cycle-sgdw", BASELINE_ARM].startswith("better +")
    assert recommend(v, configs, SPE).arm == "one_cycle-sgdw"


def test_a_baseline_that_beats_every_arm_is_recommended_plainly() -> None:
    """Schedule-Free at ~90% against searched arms at ~70-75%: the verdict says so first and recommends it,
    and its torch code is what the closing block prints."""
    arms = _with_baselines({"one_cycle-sgdw": (300, 302, 298), "clr-sgdw": (280, 284, 278)}, (360, 362, 358))
    trials, configs = _study(arms)
    v = decide(trials)
    assert v["baseline_wins"] == v["recommended"] == v["winner"] == SCHEDULE_FREE
    assert v["headline"].startswith(f"Use the baseline {SCHEDULE_FREE} (val accuracy")
    assert "it beats every searched arm" in v["headline"]
    assert all(v["arms"][a]["vs_baselines"][SCHEDULE_FREE]["call"] == "worse" for a in SEARCHED)
    rec = recommend(v, configs, SPE)
    assert rec.arm == SCHEDULE_FREE and "beats every searched arm" in rec.why
    assert "AdamWScheduleFree" in rec.code


def test_a_baseline_tied_with_the_best_arm_is_not_recommended() -> None:
    """Schedule-Free within noise of the best searched arm: both in the top group, the searched arm is
    recommended (baselines count for the recommendation only when they beat every searched arm)."""
    arms = _with_baselines({"one_cycle-sgdw": (301, 305, 297), "clr-sgdw": (250, 254, 248)}, (302, 298, 306))
    v = decide(_study(arms)[0])
    assert set(v["top_group"]) == {SCHEDULE_FREE, "one_cycle-sgdw"} and v["winner"] is None
    assert v["leader"] == SCHEDULE_FREE and v["baseline_wins"] is None
    assert v["recommended"] == "one_cycle-sgdw"
    assert v["arms"]["one_cycle-sgdw"]["vs_baselines"][SCHEDULE_FREE]["call"] == "equal"


# ----------------------------------------------------------------------------------- the attribution ladder

LADDER = (BASELINE_ARM, ADAMW_COSINE, "ladder:cosine-sgdw", "ladder:untuned-one_cycle-sgdw", "one_cycle-sgdw")


def _ladder(counts: tuple[tuple[int, ...], ...], n: int = 500) -> dict[str, dict[float, list[np.ndarray]]]:
    rng = np.random.default_rng(12)
    return {a: {1.0: [_right(n, k, rng) for k in ks]} for a, ks in zip(LADDER, counts, strict=True)}


def test_attribution_ladder_a_step_within_noise_is_not_measurable() -> None:
    """The issue's MNIST-1D shape: Adam 51%, the common default 59%, cosine at the range test's LR 91.4%,
    the arm untuned 91.3%, tuned 95.2%: the schedule bought nothing measurable, every other step a gain."""
    arms = _ladder(((255, 258, 254), (296, 294, 298), (457, 455, 459), (456, 458, 455), (476, 475, 477)))
    trials, configs = _study(arms)
    v = decide(trials)
    assert set(v["arms"]) == {BASELINE_ARM, ADAMW_COSINE, "one_cycle-sgdw"}  # ladder runs are not arms
    assert v["recommended"] == "one_cycle-sgdw"
    att = attribution(trials, v)
    assert att["arm"] == "one_cycle-sgdw" and att["rungs"] == list(LADDER) and att["missing"] == []
    steps = att["steps"]
    assert [(s["from"], s["to"]) for s in steps] == list(itertools.pairwise(LADDER))
    adjusted = holm({i: s["p"] for i, s in enumerate(steps)})
    rank = {i: r for r, i in enumerate(sorted(range(4), key=lambda i: steps[i]["p"]))}
    for i, s in enumerate(steps):
        lo, hi = (np.stack(arms[a][1.0]) for a in (s["from"], s["to"]))
        c = paired_difference(hi, lo, ALPHA / (4 - rank[i]), True)  # at the step's Holm level
        assert s["diff"] == pytest.approx(hi.mean() - lo.mean()) and s["ci_low"] == pytest.approx(c["ci_low"])
        assert s["p_holm"] == pytest.approx(adjusted[i])
        assert s["call"] == ("not measurable" if adjusted[i] >= ALPHA else "gain")
        assert s["call"] == "not measurable" or s["ci_low"] > 0  # a gain's interval excludes 0
    assert [s["call"] for s in steps] == ["gain", "gain", "not measurable", "gain"]
    schedule, range_lr = 100 * (1369 - 1371) / 1500, 100 * (1371 - 888) / 1500  # points, from the counts
    assert steps[2]["text"].startswith(
        f"the schedule bought nothing measurable here ({schedule:+.2f} points ["
    )
    assert steps[1]["text"].startswith(f"the range test's LR bought {range_lr:+.2f} points [")
    # the ladder's runs are what search.ladder_runs builds: the untuned arm is the search's first point
    untuned = next(c for c in configs if c["arm"] == "ladder:untuned-one_cycle-sgdw")
    first = build_space("one_cycle-sgdw", SEED, EPOCHS, SPE).first_point()
    assert {k: untuned[k] for k in first} == first and untuned["budgets"] == [1.0]
    cosine = next(c for c in configs if c["arm"] == "ladder:cosine-sgdw")
    # cosine's first point: the min-loss LR (docs/search_benchmark.md, "First points ...")
    assert (cosine["schedule"], cosine["optimizer"], cosine["max_lr"]) == ("cosine", "sgdw", SEED.min_loss_lr)
    # tuned within noise of untuned: the search bought nothing measurable
    same = _ladder(((255, 258, 254), (296, 294, 298), (457, 455, 459), (466, 468, 465), (467, 466, 468)))
    trials = _study(same)[0]
    last = attribution(trials, decide(trials))["steps"][-1]
    assert last["call"] == "not measurable"
    assert last["text"].endswith(": the range test's reading is enough")


def test_attribution_of_a_cosine_arm_has_no_schedule_step() -> None:
    """Warm-up + cosine recommended: its untuned run is the cosine rung itself, so the ladder has no step
    for the schedule (and no rung reported missing); the search is the step after the range test's LR."""
    ladder = (BASELINE_ARM, ADAMW_COSINE, "ladder:cosine-sgdw", "cosine-sgdw")
    rng = np.random.default_rng(3)
    counts = ((255, 258, 254), (296, 294, 298), (457, 455, 459), (476, 475, 477))
    arms = {a: {1.0: [_right(500, k, rng) for k in ks]} for a, ks in zip(ladder, counts, strict=True)}
    trials, configs = _study(arms)
    assert not any(c["arm"].startswith("ladder:untuned-") for c in configs)
    att = attribution(trials, decide(trials))
    assert att["arm"] == "cosine-sgdw" and att["rungs"] == list(ladder) and att["missing"] == []
    assert [s["bought"] for s in att["steps"]][-2:] == ["the range test's LR", "the search"]


def test_attribution_merges_the_steps_of_rungs_that_did_not_run() -> None:
    arms = _ladder(((255, 258, 254), (296, 294, 298), (457, 455, 459), (456, 458, 455), (476, 475, 477)))
    for a in LADDER[2:4]:
        del arms[a]
    trials = _study(arms)[0]
    att = attribution(trials, decide(trials))
    assert att["missing"] == list(LADDER[2:4]) and len(att["steps"]) == 2
    assert att["steps"][1]["bought"] == "the range test's LR and the schedule and the search"
    assert att["steps"][1]["call"] == "gain"
    lines = attribution_lines(att)
    assert lines[0].startswith(f"{BASELINE_ARM} -> {ADAMW_COSINE}: the common default")
    assert lines[-1] == f"not run (their steps merged with the next): {', '.join(LADDER[2:4])}"


# ----------------------------------------------------------------------------------- the words


def test_numbers_in_words() -> None:
    """What the headline and the leaderboard print: accuracy in percent and points, other metrics to a few
    significant digits, speed-ups with their interval, a lower bound said as one."""
    assert (metric_text(0.94361, "accuracy"), metric_text(0.012345, "mae")) == ("94.36%", "0.01235")
    assert (difference_text(0.032, "accuracy"), difference_text(-0.032, "accuracy")) == (
        "+3.20 points",
        "-3.20 points",
    )
    assert (difference_text(-0.00123, "mae"), difference_text(12.34, "mse")) == ("-0.00123", "+12.3")
    assert speedup_text(None) == speedup_text({"estimate": None}) == "not reached"
    sp = {"estimate": 4.0, "ci_low": 2.0, "ci_high": 8.0, "lower_bound": False}
    assert speedup_text(sp) == "4x (95% CI 2-8x)"
    assert speedup_text({**sp, "lower_bound": True}) == ">= 4x (a lower bound; 95% CI 2-8x)"


def test_paired_difference_by_hand_at_the_edges() -> None:
    """2 seeds (1 df) and 2 examples by hand; the interval clipped to [-1, 1] only when asked (accuracy), and
    by default in the metric's own units."""
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [1.0, 0.0]])
    c = paired_difference(a, b)
    d_s, delta = a.mean(1) - b.mean(1), (a - b).mean(0)  # per seed [0.5, 0.5], per example [0.5, 0.5]
    v1, v2 = d_s.var(ddof=1) / 2, delta.var(ddof=1) / 2
    assert (v1, v2) == (0.0, 0.0) and c["p"] == 0.0  # the same gap everywhere
    rng = np.random.default_rng(6)
    a, b = rng.random((2, 2)), rng.random((2, 2))
    c = paired_difference(a, b)
    d_s, delta = a.mean(1) - b.mean(1), (a - b).mean(0)
    v1, v2 = d_s.var(ddof=1) / 2, delta.var(ddof=1) / 2
    df = (v1 + v2) ** 2 / (v1**2 + v2**2)
    assert c["diff"] == pytest.approx(d_s.mean()) and c["df"] == pytest.approx(df)
    assert c["p"] == pytest.approx(2 * stats.t.sf(abs(d_s.mean()) / math.sqrt(v1 + v2), df))
    # a wide interval: seeds that disagree a lot on a metric in [0, 1]
    wide_a = np.array([[1.0] * 4, [0.0] * 4, [1.0] * 4])
    wide_b = np.array([[0.0] * 4, [1.0] * 4, [0.0] * 4])
    raw, clipped = paired_difference(wide_a, wide_b), paired_difference(wide_a, wide_b, clip=True)
    assert raw["ci_low"] < -1 and raw["ci_high"] > 1  # the metric's units, not clipped by default
    assert (clipped["ci_low"], clipped["ci_high"]) == (-1.0, 1.0)
    assert clipped["diff"] == raw["diff"] and clipped["p"] == raw["p"]


def test_a_holm_call_never_shows_an_interval_across_zero() -> None:
    """Three comparisons; the weakest has p between alpha / 3 and alpha, so Holm calls it (the two before it
    are called too) while its Bonferroni interval (alpha / 3) crosses 0: its interval is at alpha / 1."""
    base = np.zeros((3, 1))

    def seeds(gap: float, spread: float) -> np.ndarray:  # 3 seeds, one example: a t test on 2 df
        return (gap + spread * np.array([-1.0, 0.0, 1.0]))[:, None]

    # the weakest: t = gap / (spread / sqrt(3)) at the t quantile of p = 0.03, 2 df
    spread = 1.0
    weak_gap = stats.t.ppf(1 - 0.03 / 2, 2) * spread / math.sqrt(3)
    pairs = {
        "strong": (seeds(10.0, 0.1), base),
        "clear": (seeds(5.0, 0.1), base),
        "weak": (seeds(weak_gap, 1.0), base),
    }
    family = holm_family(pairs)
    weak = family["weak"]
    assert weak["p"] == pytest.approx(0.03) and weak["p_holm"] < ALPHA  # Holm calls it
    bonferroni = paired_difference(*pairs["weak"], ALPHA / 3)
    assert bonferroni["ci_low"] < 0  # what the report used to print beside "better"
    assert weak["ci_low"] > 0 and weak["ci_low"] == pytest.approx(
        paired_difference(*pairs["weak"], ALPHA)["ci_low"]
    )
    strong = family["strong"]  # the smallest p: the Bonferroni interval, as before
    assert strong["ci_low"] == pytest.approx(paired_difference(*pairs["strong"], ALPHA / 3)["ci_low"])


# ----------------------------------------------------------------------------- speed-up intervals, the rule


def test_speedup_interval_is_the_bootstrap_of_epochs_to_target_ratios() -> None:
    """The speed-up's interval, recomputed draw by draw from the same bootstrap weights: the baseline's
    resampled mean is that draw's target, each arm's epochs to it are its first rung whose resampled mean
    reaches it, a draw where an arm never reaches it counts 0, and the interval is the 2.5-97.5 percentiles.
    One arm reaches the target early in some draws only; the other misses it in some draws."""
    rng = np.random.default_rng(3)
    n, s = 200, 3

    def runs(k: int) -> list[np.ndarray]:
        return [_right(n, k + d, rng) for d in (-4, 0, 4)]

    arms = {
        BASELINE_ARM: {1.0: runs(150)},
        "one_cycle-sgdw": {0.125: runs(146), 0.25: runs(150), 0.5: runs(156), 1.0: runs(170)},
        "clr-sgdw": {0.25: runs(140), 0.5: runs(146), 1.0: runs(151)},
    }
    v = decide(_study(arms)[0])
    seed_w, example_w = bootstrap_weights(s, n)
    target = resampled_means(np.stack(arms[BASELINE_ARM][1.0]), seed_w, example_w)
    for arm in ("one_cycle-sgdw", "clr-sgdw"):
        means = {b * EPOCHS: resampled_means(np.stack(m), seed_w, example_w) for b, m in arms[arm].items()}
        ratio = []
        for d in range(len(seed_w)):
            reached = [e for e in sorted(means) if means[e][d] >= target[d] - 1e-12]
            ratio.append(EPOCHS / reached[0] if reached else 0.0)
        sp = v["speedup"][arm]
        assert (sp["ci_low"], sp["ci_high"]) == pytest.approx(tuple(np.percentile(ratio, [2.5, 97.5])))
        assert sp["reached_share"] == pytest.approx(np.mean(np.array(ratio) > 0))
    assert v["speedup"]["clr-sgdw"]["ci_low"] == 0.0 < v["speedup"]["clr-sgdw"]["reached_share"] < 1
    assert len({EPOCHS / r for r in [1, 2, 4]} & {v["speedup"]["one_cycle-sgdw"]["ci_high"]}) == 1


RULE = (
    " An arm joins the top group unless a paired test ({test}) shows it {worse} the leader at 95% after"
    " Holm's correction; a winner is named only when the top group has one arm. The same test against each"
    f" baseline ({BASELINE_ARM}) calls each searched arm better, equal or worse, Holm over all 2 such"
    " comparisons (a pair of the leader and an arm that these calls tell apart leaves that arm out of the top"
    " group); a baseline is recommended only when it beats every searched arm. Each interval of a"
    " difference is at its Holm step's level (alpha / (m - rank)), so it excludes 0 whenever the difference"
    " is called. Intervals of {means} and speed-ups: bootstrap over {resampled}."
)
FEW = " With {seeds} the seed-to-seed spread is not estimable: no winner is named."


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_the_rule_as_printed_for_accuracy_paired_by_example(n_seeds: int) -> None:
    n = 200
    arms = {a: {1.0: [_right(n, k + d) for d in range(n_seeds)]} for a, k in
            (("one_cycle-sgdw", 180), ("sgdr-sgdw", 170), (BASELINE_ARM, 150))}  # fmt: skip
    seeds = "1 seed" if n_seeds == 1 else f"{n_seeds} seeds"
    head = f"Final val accuracy at the full budget over {seeds} x {n} validation examples (one example = 0.5"
    test = "by seed and by example, Student t with Welch-Satterthwaite df"
    rule = RULE.format(test=test, worse="below", means="accuracies", resampled="seeds and examples")
    assert decide(_study(arms)[0])["rule"] == head + " points)." + rule + (
        FEW.format(seeds=seeds) * (n_seeds < 3)
    )


@pytest.mark.parametrize("n_seeds", [1, 4])
def test_the_rule_as_printed_for_a_lower_metric_paired_by_seed(n_seeds: int) -> None:
    """One number per run (no per-example values): paired by seed, Student t with seeds - 1 df."""
    arms = {a: {1.0: [v + 0.01 * d for d in range(n_seeds)]} for a, v in
            (("one_cycle-sgdw", 0.2), ("sgdr-sgdw", 0.3), (BASELINE_ARM, 0.5))}  # fmt: skip
    v = decide(study_tables(arms, metric="mae", mode="min")[2], metric="mae", mode="min")
    seeds = "1 seed" if n_seeds == 1 else f"{n_seeds} seeds"
    head = (
        f"Final val mae at the full budget over {seeds}; the final runs recorded no per-example values, so"
        " arms are paired by seed only. Lower is better."
    )
    test = f"by seed, Student t with {n_seeds - 1} df"
    rule = RULE.format(test=test, worse="above", means="mean val mae", resampled="seeds")
    assert v["rule"] == head + rule + (FEW.format(seeds=seeds) * (n_seeds < 3))


def test_better_than_the_strongest_baseline_but_not_every_baseline() -> None:
    """Both searched arms clearly beat the strongest baseline, but not a weaker one whose seeds spread from
    10% to 97%: the headline says whom they beat, naming both."""
    arms = _with_baselines({"one_cycle-sgdw": (370, 372, 368), "clr-sgdw": (360, 362, 358)}, (300, 300, 300))
    arms[ADAMW_COSINE] = {1.0: [_right(400, k, np.random.default_rng(k)) for k in (40, 380, 390)]}
    v = decide(_study(arms)[0])
    assert v["strongest_baseline"] == SCHEDULE_FREE and v["better_than_every_baseline"] == []
    assert v["better_than_baseline"] == ["clr-sgdw", "one_cycle-sgdw"]
    assert v["headline"].startswith("No clear winner: ")  # the spread-out baseline is in the top group too
    assert f" Better than {SCHEDULE_FREE}: clr-sgdw, one_cycle-sgdw." in v["headline"]


def test_no_finished_run_gives_a_verdict_with_every_key_of_a_full_one() -> None:
    """verdict.json has one schema: a study whose every full-budget run raised answers with the same keys,
    empty, as a study that finished (a reader of the file needs no special case)."""
    arms = _three_tied()
    full = decide(_study(arms)[0])
    empty = decide(_study(arms, died=dict.fromkeys(arms, 1.0))[0])
    assert empty["headline"].startswith("No finished final runs") and empty["arms"] == {}
    assert set(empty) == set(full)
    assert empty["baselines"] == [] and empty["strongest_baseline"] is None and empty["top_group"] == []


def test_baselines_tied_on_the_metric_rank_by_val_loss_and_a_named_baseline_is_kept() -> None:
    """Two baselines with the same per-example values: the strongest is the one with the lower mean val loss
    (recorded per arm), whichever name sorts first; `baseline=` names the reference instead."""
    arms = _with_baselines({"one_cycle-sgdw": (370, 372, 368), "clr-sgdw": (360, 362, 358)}, (300, 300, 300))
    arms[ADAMW_COSINE] = arms[SCHEDULE_FREE]
    for low in (ADAMW_COSINE, SCHEDULE_FREE):
        loss = {ADAMW_COSINE: 0.5, SCHEDULE_FREE: 0.5} | {low: 0.2}
        trials = _study(arms, loss=loss)[0]
        v = decide(trials)
        assert v["strongest_baseline"] == v["baseline"] == low
        assert v["arms"][low]["mean_val_loss"] == pytest.approx(0.2)
        named = decide(trials, baseline=BASELINE_ARM)
        assert named["baseline"] == BASELINE_ARM and named["strongest_baseline"] == low


def test_accuracy_differences_against_baselines_stay_within_plus_minus_one() -> None:
    """Accuracy differences live in [-1, 1]: an interval wide enough to pass 1 (3 seeds that disagree) is
    clipped there, in the baseline comparisons as in the top group."""
    n = 100
    arms = {
        "one_cycle-sgdw": {1.0: [_right(n, k) for k in (100, 100, 40)]},
        "clr-sgdw": {1.0: [_right(n, k) for k in (100, 100, 40)]},
        BASELINE_ARM: {1.0: [_right(n, k) for k in (0, 0, 35)]},
    }
    v = decide(_study(arms)[0])
    c = v["arms"]["one_cycle-sgdw"]["vs_baselines"][BASELINE_ARM]
    unclipped = paired_difference(np.stack(arms["one_cycle-sgdw"][1.0]), np.stack(arms[BASELINE_ARM][1.0]))
    assert unclipped["ci_high"] > 1 and c["ci_high"] == 1.0 and c["ci_low"] >= -1


def test_the_rule_says_higher_is_better_for_a_custom_metric_maximised() -> None:
    arms = {a: {1.0: [v + 0.01 * d for d in range(3)]} for a, v in
            (("one_cycle-sgdw", 0.8), ("sgdr-sgdw", 0.7), (BASELINE_ARM, 0.5))}  # fmt: skip
    v = decide(study_tables(arms, metric="r2", mode="max")[2], metric="r2", mode="max")
    assert " so arms are paired by seed only. Higher is better. An arm joins" in v["rule"]
    assert "shows it below the leader" in v["rule"] and v["leader"] == "one_cycle-sgdw"
