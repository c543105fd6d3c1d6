"""A budget of trainings, spent by racing in rounds (`[search] budget`, `--budget`).

One training is one full-length run of the study's epochs; a run over several budgets of the ladder costs
their sum; the range tests count by their steps (`rangestage.range_test_cost`). The rounds, each released
only when the previous one has fully ended, so that no decision depends on which trial finishes first:

1. every arm's first point (the range test's suggestion, the first trial of its Optuna study) and every
   baseline, on the first seed, as final runs;
2. the race's test (`results.race.race_calls`: paired, Holm) stops the candidates already below the leader;
   the strongest baseline left is never stopped, so that the verdict measures against it;
3. search trials for the arms left, while the budget holds more than what the rest needs (the remaining
   seeds of every candidate left, the shorter budgets and the attribution ladder of one arm), told to Optuna
   in the order they were asked, after the round; an arm whose search trial beats its current config on the
   first seed takes that config, whose first-seed run joins the next round;
4. one more seed per round for every candidate left, the test after each; a candidate whose remaining seeds
   no longer fit the budget is stopped (best first keep theirs);
5. the shorter budgets (the speed-up ladder) for the arm the verdict recommends and its attribution
   ladder, in one round (both wait only for the verdict's arm), each if it fits, in that order.

Search trials run the full epochs without early stopping: ASHA's calls depend on which trial reaches a rung
first. `plan.json` records every round, what it stopped and why, and what the budget left unrun.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from ..config import FULL_BUDGET, StudyConfig, StudyFileError, metric_mode, metric_name
from ..lr import baseline_config, range_family
from ..results import PLAN_FILE, decide, is_baseline, outcomes, race_calls, tables_from_rows, write_json

METRIC = "val_metric"


def run_cost(config: dict[str, Any]) -> float:
    """A run's cost in trainings: a final run trains each of its budgets (fractions of the epochs) in turn."""
    if config.get("stage") == "final":
        return float(sum(config.get("budgets", [1.0])))
    return 1.0


def range_test_estimate(cfg: StudyConfig, steps_per_epoch: int) -> float:
    """The range tests' cost in trainings before they run: every weight decay's sweep of every optimizer
    family, at its full length (a sweep stopped by divergence costs less)."""
    from ..rangetest import sweep_steps

    if cfg.search.space != "seeded":
        return 0.0
    families = {range_family(arm) for arm in cfg.search.arms}
    steps = cfg.range_test.num_steps or sweep_steps(steps_per_epoch)
    trial_steps = max(1, cfg.train.epochs * steps_per_epoch)
    return len(families) * len(cfg.range_test.weight_decays) * steps / trial_steps


def minimum_budget(cfg: StudyConfig, steps_per_epoch: int) -> float:
    """The least budget a race can start with: the range tests and its first round (one run per arm and
    per baseline)."""
    return range_test_estimate(cfg, steps_per_epoch) + len(cfg.search.arms) + len(cfg.search.baselines)


def check_budget(cfg: StudyConfig, steps_per_epoch: int, flag: bool = False) -> None:
    """Refuse a budget below `minimum_budget` before any work, naming the file and key or the flag."""
    budget = cfg.search.budget
    if budget == FULL_BUDGET:
        return
    least = minimum_budget(cfg, steps_per_epoch)
    if budget < least:
        where = "--budget" if flag else f"{cfg.source}: [search] budget"
        rt = range_test_estimate(cfg, steps_per_epoch)
        raise StudyFileError(
            f"{where} must be at least {least:.3g} trainings (the range tests, {rt:.3g}, and one first run "
            f"for each of {len(cfg.search.arms)} arms and {len(cfg.search.baselines)} baselines), "
            f"but got {budget:g}."
        )


class RaceSearcher(Searcher):
    """The study's rounds inside one Tuner: per-arm OptunaSearch for the search trials, fixed configs for the
    rest; a round's runs are handed to Tune only once every run of the previous round has ended.

    Args:
        searchers: arm -> its OptunaSearch (no ConcurrencyLimiter: a round caps its own asks).
        cfg: the study.
        settings: what Tune merges into every config (`search.trial_settings`), for the tables of the test.
        ladder: the attribution ladder's candidate runs (`search.ladder_runs`).
        spent: trainings already spent (the range tests).
        plan_path: where `plan.json` goes, rewritten after every round.
    """

    def __init__(
        self,
        searchers: dict[str, Searcher],
        cfg: StudyConfig,
        settings: dict[str, Any],
        ladder: list[dict],
        spent: float,
        plan_path: Path,
        rungs_of: Callable[[str | None, list[dict]], list[dict]],
        baselines: list[dict] | None = None,
    ):
        mode = metric_mode(cfg.train)
        super().__init__(metric=METRIC, mode=mode)
        q = cfg.search
        self.searchers = searchers
        self.sign = 1.0 if mode == "max" else -1.0
        self.direction, self.metric_label = mode, metric_name(cfg.train.metric)
        self.accuracy = self.metric_label == "accuracy"
        self.target = cfg.target
        self.budget, self.spent = float(q.budget), float(spent)
        self.seeds, self.per_round = list(q.seeds), q.max_concurrent_per_arm
        self.trials_per_arm, self.epochs = q.trials_per_arm, cfg.train.epochs
        self.shorter = [b for b in q.budgets if b < 1.0]
        self.settings, self.ladder, self.plan_path, self.rungs_of = settings, ladder, plan_path, rungs_of
        # candidate -> its config (no seed, stage or budgets), its runs by seed, alive, searched or not
        self.candidates: dict[str, dict[str, Any]] = {}
        # the baselines' configs as the study built them (`search.baseline_runs`: a range test's baseline
        # needs its reading); without them, the study's fixed recipes
        if baselines is None:
            baselines = [baseline_config(name, q.baseline_lr) for name in q.baselines]
        for config in baselines:
            self.candidates[config["arm"]] = {"config": config, "runs": {}, "alive": True, "arm": False}
        self.asked = dict.fromkeys(searchers, 0)
        self.rounds: list[dict[str, Any]] = []
        self.queue: list[dict[str, Any]] = []  # the current round's slots not yet handed to Tune
        self.open: set[str] = set()  # the current round's trials handed out and not ended
        self.tells: list[tuple[str, str]] = []  # (arm, trial id) of this round's Optuna asks, in order
        self.records: dict[str, list] = {}  # trial id -> [config, results, error]
        self.keys: dict[str, str] = {}  # a run's training (`_key`) -> the trial that trains it
        self.shared: dict[str, str] = {}  # a run recorded under a second name -> the trial that trained it
        self.left_out: dict[str, str] = {}  # trial id -> why the verdict leaves it out
        self.stopped: dict[str, str] = {}  # candidate -> why it got no more runs
        self.not_run: list[str] = []
        self.phase = "first"
        self.finished = False
        self.recommended: str | None = None

    # ------------------------------------------------------------------------------------- Tune's side

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self.rounds:
            self._release(self._first_round(), "first points and baselines on the first seed")
        while self.queue:
            slot = self.queue.pop(0)
            if slot["kind"] in ("first", "search"):
                return self._ask(slot, trial_id)
            config = dict(slot["config"])
            twin = self.keys.get(_key(config))
            if twin is None:
                return self._hand_out(slot, config, trial_id)
            self._share(slot, config, twin)
            if not self.open and not self.queue:  # its twin had ended: so has the round
                self._round_ended()
        return Searcher.FINISHED if self.finished else None

    def _ask(self, slot: dict[str, Any], trial_id: str) -> dict:
        """An Optuna ask: the arm's first is its enqueued range-test point, run as a final on the first seed;
        a search trial runs on the first seed too, as the first point did (the search compares on one)."""
        arm = slot["arm"]
        config = self.searchers[arm].suggest(trial_id)
        self.asked[arm] += 1
        self.tells.append((arm, trial_id))
        if slot["kind"] == "first":
            config = {**config, **slot["extra"]}
            self.candidates[arm] = {"config": _bare(config), "runs": {}, "alive": True, "arm": True}
        else:
            config = {**config, "seed": slot["seed"]}
        return self._hand_out(slot, config, trial_id)

    def _hand_out(self, slot: dict[str, Any], config: dict[str, Any], trial_id: str) -> dict:
        if slot["kind"] != "search":
            self.keys.setdefault(_key(config), trial_id)
        if slot["kind"] in ("first", "seed"):
            self.candidates[config["arm"]]["runs"][config["seed"]] = trial_id
        slot["trial_id"] = trial_id
        self.records[trial_id] = [config, [], None]
        self.open.add(trial_id)
        return config

    def _share(self, slot: dict[str, Any], config: dict[str, Any], twin: str) -> None:
        """A run the race already has (the same training: config and seed, under another name, such as
        fastai's recipe and the one-cycle arm's first point): not trained again, recorded under this name
        too, at no cost (`results.shared_records` writes its rows)."""
        alias = f"{twin}+{config['arm']}"
        self.shared[alias] = twin
        self.records[alias] = [config, [], None]
        if slot["kind"] == "seed":
            self.candidates[config["arm"]]["runs"][config["seed"]] = alias
        self.spent -= slot["cost"]
        slot.update(trial_id=alias, cost=0.0, shared=twin)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self.records:
            return
        config, results, _ = self.records[trial_id]
        results.append(result)
        last = (
            result.get("budget") == config.get("budgets", [1.0])[-1]
            if config.get("stage") == "final"
            else result.get("epoch", 0) >= self.epochs
        )
        if last:  # the run's last report: its round may end here, before Tune's complete event
            self._ended(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.records:
            return
        if error:
            self.records[trial_id][2] = "the run failed (its error is in the trials table)"
            self.keys = {k: t for k, t in self.keys.items() if t != trial_id}  # not a run to share
        self._ended(trial_id)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
        for searcher in self.searchers.values():  # asks after Tune's last save go to its next asks
            searcher.adopt_lost()

    # ------------------------------------------------------------------------------------- the rounds

    def _ended(self, trial_id: str) -> None:
        if trial_id not in self.open:
            return
        self.open.discard(trial_id)
        if not self.open and not self.queue:
            self._round_ended()

    def _round_ended(self) -> None:
        """Tell Optuna in the order of the asks, then decide the next round."""
        for arm, tid in self.tells:
            _, results, error = self.records[tid]
            last = results[-1] if results and not error else None
            self.searchers[arm].on_trial_complete(tid, result=last, error=bool(error) or last is None)
        self.tells = []
        self._adopt_search()
        self._test()
        self._next()

    def _price(self, slots: list[dict[str, Any]]) -> None:
        """What `slots` will cost, before their release, where a decision needs it: a fixed run the race
        already has, or one an earlier slot trains, is free. Elsewhere `_share` refunds it as Tune asks."""
        seen = set(self.keys)
        for slot in slots:
            if "config" in slot:
                key = _key(slot["config"])
                if key in seen:
                    slot["cost"] = 0.0
                seen.add(key)

    def _release(self, slots: list[dict[str, Any]], what: str) -> None:
        self.spent += sum(s["cost"] for s in slots)
        self.queue = list(slots)
        entry = {"round": len(self.rounds) + 1, "what": what, "runs": slots, "stopped": {}}
        self.rounds.append(entry)
        self._write()

    def _first_round(self) -> list[dict[str, Any]]:
        seed = self.seeds[0]
        extra = {"stage": "final", "seed": seed, "budgets": [1.0], "source_trial": "first point"}
        slots = [
            {"kind": "first", "arm": arm, "seed": seed, "cost": 1.0, "extra": extra} for arm in self.searchers
        ]
        slots += [self._fixed(name, seed) for name, c in self.candidates.items() if not c["arm"]]
        return slots

    def _fixed(self, name: str, seed: int, budgets: list[float] | None = None, kind: str = "seed") -> dict:
        config = {
            **self.candidates[name]["config"],
            "stage": "final",
            "seed": seed,
            "budgets": budgets or [1.0],
        }
        return {"kind": kind, "arm": name, "seed": seed, "cost": run_cost(config), "config": config}

    def _row(self, tid: str) -> tuple[dict[str, Any], list[dict], Any]:
        """A run's record as the tables read it: a shared run's results and error are its twin's."""
        _, results, error = self.records[self.shared.get(tid, tid)]
        return {**self.settings, **self.records[tid][0]}, results, error

    def _alive(self) -> list[str]:
        """The candidates left, best first by their mean over the seeds they all ran."""
        alive = [n for n, c in self.candidates.items() if c["alive"]]
        means = self._means(alive)
        # a config the search just adopted has no final run yet: its search trial's value stands in
        score = {n: means.get(n, self.candidates[n].get("score", -math.inf * self.sign)) for n in alive}
        return sorted(alive, key=lambda n: (-self.sign * score[n], n))

    def _full_matrices(self, names: list[str]) -> dict[str, Any]:
        runs = {tid for n in names for tid in self.candidates[n]["runs"].values()}
        trials, _ = tables_from_rows(
            {("final", tid): self._row(tid) for tid in runs if self.shared.get(tid, tid) not in self.open}
        )
        matrices, _, _, _ = outcomes(trials)
        return {n: m[max(m)] for n, m in matrices.items() if n in names}

    def _means(self, names: list[str]) -> dict[str, float]:
        return {n: float(m.mean()) for n, m in self._full_matrices(names).items()}

    def _stop(self, name: str, why: str) -> None:
        c = self.candidates[name]
        c["alive"] = False
        self.stopped[name] = why
        self.rounds[-1]["stopped"][name] = why
        if len(c["runs"]) < len(self.seeds):  # without every seed the verdict cannot pair it
            for tid in c["runs"].values():
                self.left_out[tid] = f"{name}: {why}"

    def _test(self) -> None:
        """Stop every candidate the race's paired test puts below the leader; a failed run stops its own."""
        alive = [n for n, c in self.candidates.items() if c["alive"] and c["runs"]]
        for n in alive:
            if any(self._row(t)[2] for t in self.candidates[n]["runs"].values()):
                self._stop(n, "a run of it failed (its error is in the trials table)")
        alive = [n for n in alive if self.candidates[n]["alive"]]
        full = self._full_matrices(alive)
        for n in alive:
            if n not in full:
                self._stop(n, "it has no finished run at the full budget")
        leader, calls = race_calls(full, self.sign, self.accuracy)
        # the verdict measures against the strongest baseline: it keeps its seeds
        baselines = sorted((n for n in full if is_baseline(n)), key=lambda n: -self.sign * full[n].mean())
        keep = baselines[0] if baselines else None
        n_seeds = next(iter(full.values())).shape[0] if full else 0
        for n, c in calls.items():
            if c["call"] == "below" and n != keep:
                points = f"{100 * c['diff']:+.2f} points" if self.accuracy else f"{c['diff']:+.3g}"
                self._stop(n, f"below {leader} after {n_seeds} seed(s): {points}, Holm p {c['p_holm']:.2g}")

    def _adopt_search(self) -> None:
        """An arm whose best search trial of this round beat its config on the first seed takes its config."""
        round_ = self.rounds[-1]
        for arm in sorted({s["arm"] for s in round_["runs"] if s["kind"] == "search"}):
            c = self.candidates[arm]
            mine = self._full_matrices([arm]).get(arm)
            if mine is None or not c["alive"]:
                continue
            best, best_tid = self.sign * float(mine[0].mean()), None
            for s in round_["runs"]:
                _, results, error = self.records[s["trial_id"]]
                if s["kind"] != "search" or s["arm"] != arm or error or not results:
                    continue
                value = results[-1].get(METRIC)
                if value is not None and math.isfinite(value) and self.sign * value > best:
                    best, best_tid = self.sign * value, s["trial_id"]
            if best_tid is not None:
                for tid in c["runs"].values():
                    self.left_out[tid] = f"{arm}: its search found a better config (trial {best_tid})"
                c["config"] = {**_bare(self.records[best_tid][0]), "source_trial": best_tid}
                c["runs"], c["score"] = {}, self.sign * best

    def _reserve(self, alive: list[str]) -> float:
        """What the race needs after the search: every seed each candidate left still lacks, the shorter
        budgets and the attribution ladder of one arm. A rung already trained (the untuned rung is its arm's
        first point) is free; two candidates' seeds yet to run are counted as two, since a search trial that
        wins parts them."""
        seeds = sum(len(self.seeds) - len(self.candidates[n]["runs"]) for n in alive)
        ladder = max(
            (
                sum(run_cost(c) for c in self.rungs_of(a, self.ladder) if _key(c) not in self.keys)
                for a in self.searchers
            ),
            default=0,
        )
        return seeds + len(self.seeds) * sum(self.shorter) + ladder  # the ladder's runs: every seed already

    def _next(self) -> None:
        """Release the next round (each phase's method returns whether it released one), or finish."""
        alive = self._alive()
        if self.phase in ("first", "search"):
            self.phase = "search"
            if self._search_round(alive):
                return
            self.phase = "seeds"
        if self.phase == "seeds":
            if self._seeds_round(alive):
                return
            self.phase = "last"
            self.recommended = self._verdict_arm()
            if self._last_round():
                return
        self.finished = True
        self._write()

    def _search_round(self, alive: list[str]) -> bool:
        spare = self.budget - self.spent - self._reserve(alive)
        arms = [a for a in alive if self.candidates[a]["arm"] and self.asked[a] < self.trials_per_arm]
        slots: list[dict[str, Any]] = []
        for k in range(self.per_round):
            for arm in arms:
                # a trial that wins costs its arm one more first-seed run (the reserve counts the seeds it
                # lacks now): kept spare for each arm searched that has one to lose
                searched = {s["arm"] for s in slots} | {arm}
                switch = sum(bool(self.candidates[a]["runs"]) for a in searched)
                fits = len(slots) + 1 + switch <= spare + 1e-9
                if fits and self.asked[arm] + k < self.trials_per_arm:
                    slots.append({"kind": "search", "arm": arm, "seed": self.seeds[0], "cost": 1.0})
        if slots:
            self._release(slots, "search trials for the arms left, on the first seed")
        return bool(slots)

    def _seeds_round(self, alive: list[str]) -> bool:
        left = self.budget - self.spent
        slots, planned = [], set(self.keys)
        for name in alive:  # best first: the ones below lose their seeds when the budget runs out
            missing = [s for s in self.seeds if s not in self.candidates[name]["runs"]]
            if not missing:
                continue
            keys = {_key(self._fixed(name, s)["config"]) for s in missing}
            cost = len(keys - planned)  # a run another candidate trains too is shared, not paid twice
            if cost > left + 1e-9:
                self._stop(name, f"the budget left ({left:.3g} trainings) does not hold its {cost} seeds")
                self.not_run.append(f"{name}: seeds {missing}")
                continue
            left -= cost
            planned |= keys
            slots.append(self._fixed(name, missing[0]))
        if slots:
            self._release(slots, "one more seed for every candidate left")
        return bool(slots)

    def _last_round(self) -> bool:
        """The recommended arm's shorter budgets (the speed-up), then its attribution ladder, in one round:
        both wait only for the verdict's arm; each runs if the budget left holds it, in that order."""
        self.phase = "done"
        arm, left = self.recommended, self.budget - self.spent
        slots, what = [], []
        if arm and not is_baseline(arm) and self.shorter:
            rungs = [self._fixed(arm, s, self.shorter, "rungs") for s in self.seeds]
            if sum(s["cost"] for s in rungs) <= left + 1e-9:
                slots, left = rungs, left - sum(s["cost"] for s in rungs)
                what.append("shorter budgets")
            else:
                self.not_run.append(f"{arm}: the shorter budgets {self.shorter} (the speed-up)")
        ladder = [
            {"kind": "ladder", "arm": c["arm"], "seed": c["seed"], "cost": run_cost(c), "config": c}
            for c in self.rungs_of(arm, self.ladder)
        ]
        self._price(ladder)
        if ladder and sum(s["cost"] for s in ladder) <= left + 1e-9:
            slots += ladder
            what.append("attribution ladder")
        elif ladder:
            self.not_run.append(f"the attribution ladder of {arm} ({len(ladder)} runs)")
        if slots:
            self._release(slots, f"the {' and the '.join(what)} of the recommended arm {arm}")
        return bool(slots)

    def _verdict_arm(self) -> str | None:
        """The arm the verdict will recommend, from the candidates that have every seed."""
        runs = [
            tid for c in self.candidates.values() for tid in c["runs"].values() if tid not in self.left_out
        ]
        trials, _ = tables_from_rows({("final", t): self._row(t) for t in runs})
        verdict = decide(trials, target=self.target, metric=self.metric_label, mode=self.direction)
        return verdict["recommended"]

    def plan(self) -> dict[str, Any]:
        """What `plan.json` holds."""
        return {
            "budget": self.budget,
            "spent": self.spent,
            "finished": self.finished,
            "recommended": self.recommended,
            "rounds": [
                {**r, "runs": [{k: v for k, v in s.items() if k in _SLOT_KEYS} for s in r["runs"]]}
                for r in self.rounds
            ],
            "runs": [{k: v for k, v in s.items() if k in _SLOT_KEYS} for r in self.rounds for s in r["runs"]],
            "stopped": self.stopped,
            "left_out": self.left_out,
            "not_run": self.not_run,
            "shared": {a: {"of": t, "config": self.records[a][0]} for a, t in self.shared.items()},
        }

    def _write(self) -> None:
        write_json(self.plan_path, self.plan())


_SLOT_KEYS = ("kind", "arm", "seed", "cost", "trial_id", "shared")
_LABELS = ("arm", "source_trial", "source_full_budget")  # what names a run, not what it trains


def _key(config: dict[str, Any]) -> str:
    """What a run trains (config, seed, budgets), without its labels: runs with the same key are the same."""
    trained = {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in config.items()
        if k not in _LABELS
    }
    return json.dumps(trained, sort_keys=True, default=str)


def _bare(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("stage", "seed", "budgets")}


__all__ = ["PLAN_FILE", "RaceSearcher", "check_budget", "minimum_budget", "range_test_estimate", "run_cost"]
