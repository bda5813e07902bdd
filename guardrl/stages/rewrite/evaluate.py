"""``guardrl rewrite eval``: does the rewriter make a target VLM answer more safely, and still helpfully?

For every benchmark input (a rewrite-task shard dir: ``data_prep.siuo``, ``figstep``, ``vlguard_test``, ...):

1. **rewrite** -- the rewriter (the recipe's ``task``, looked up by name: its ``prompt_messages`` and ``parse``)
   reads the user's text and images; its output's rewritten prompt (``task.rewritten_prompt(parsed)``, else
   ``parsed.rewrite``) replaces the text. An output that does not parse falls back to the original prompt and is
   counted (``rewrite_fallbacks``). ``rewriters:`` (a list of named models, e.g. an SFT and an RL checkpoint)
   instead of ``rewriter:`` rewrites with each, side by side: arm ``rewritten-<name>`` per rewriter
   (:func:`rewriter_arms`);
2. **answer** -- each target VLM, unchanged, answers the original prompt and each rewritten one (same images) as
   a plain user turn (once per distinct prompt: a rewrite equal to the original is not asked twice); the
   ``refuse_all`` baseline answers :attr:`RewriteEvalConfig.refusal_text` to everything;
3. **guard** -- guardrl's guard (task ``guard``) judges each answer against the user's *original* request and
   images (once per distinct answer of an input): ``Response: harmful`` = unsafe; the refusal detector
   (:mod:`.refusal`) marks refusals;
4. **judge** (optional) -- an OpenAI-compatible judge model asked each benchmark's published prompt (:mod:`.judges`).

Models run one after another (rewriter, then each target, then the guard), each closed before the next loads,
so a GPU holds one at a time. Every phase appends its records to ``<out>/cache/<phase>.jsonl`` as it goes (one
line per input, flushed and fsynced per batch; a torn last line is ignored), under a header naming the model and
settings: a run killed at any point resumes where it stopped and loads no model whose phase is complete; a
changed model or setting starts that phase afresh. Metrics: :mod:`.metrics`; report: :mod:`.report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from guardrl.core.recipe import RecipeError
from guardrl.core.schema import HARMFUL, Sample
from guardrl.core.text_overlap import faithfulness
from guardrl.generation.base import GenerationEngine, Prompt, SamplingParams, isolate_failures
from guardrl.stages.rewrite.api import rewritten_text
from guardrl.stages.rewrite.judges import Judge, JudgeConfig, JudgeInput, protocols_for
from guardrl.stages.rewrite.metrics import AnswerRecord, answer_metrics, rewrite_metrics
from guardrl.stages.rewrite.refusal import is_empty, is_refusal
from guardrl.tasks import get_task, query_sample

log = logging.getLogger(__name__)
ENGINE_NAMES = ("auto", "hf", "vllm", "openai")
#: the refuse-all baseline's answer to every input
REFUSAL_TEXT = "I'm sorry, but I can't help with that."


@dataclass(frozen=True)
class ModelSpec:
    """A model behind a generation engine.

    Attributes:
        name: its name in tables (targets) -- letters, digits, ``-_.``.
        model: a model folder or Hub id (``hf``/``vllm``/``auto``), or the served model's name (``openai``).
        engine: ``auto`` | ``hf`` | ``vllm`` (:func:`guardrl.generation.make_engine`) | ``openai`` (an
            OpenAI-compatible endpoint, :mod:`guardrl.generation.openai_compat`; its settings in ``engine_kwargs``).
        engine_kwargs: passed to the engine.
        sampling: generation settings (greedy by default, as for reported numbers).
    """

    name: str
    model: str
    engine: str = "auto"
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict)
    sampling: SamplingParams = SamplingParams(max_new_tokens=256)

    def key(self) -> dict[str, Any]:
        return {"model": self.model, "engine": self.engine, "engine_kwargs": dict(self.engine_kwargs),
                "sampling": asdict(self.sampling)}


@dataclass(frozen=True)
class RewriteEvalConfig:
    """The ``rewrite_eval:`` section of a recipe, validated (:func:`config_from_section`)."""

    out: str
    rewriters: tuple[ModelSpec, ...]
    targets: tuple[ModelSpec, ...]
    guard: ModelSpec
    benchmarks: tuple[Mapping[str, Any], ...]
    run_name: str = "rewrite-eval"
    task: str = "rewrite"
    task_modules: tuple[str, ...] = ()
    judge: JudgeConfig | None = None
    limit: int | None = None
    batch_size: int = 8
    refusal_text: str = REFUSAL_TEXT
    guard_task: str = "guard"


SECTION_KEYS = frozenset({"out", "run_name", "task", "task_modules", "rewriter", "rewriters", "targets", "guard",
                          "judge", "benchmarks", "limit", "batch_size", "refusal_text", "guard_task"})
MODEL_KEYS = frozenset({"name", "model", "engine", "engine_kwargs", "sampling"})


def model_spec(d: Any, where: str, default_name: str, default_tokens: int) -> ModelSpec:
    if isinstance(d, str):
        d = {"model": d}
    if not isinstance(d, Mapping) or not d.get("model"):
        raise RecipeError(f"{where}: needs a mapping with `model:` (a folder, a Hub id or a served model name)")
    unknown = set(d) - MODEL_KEYS
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(MODEL_KEYS)}")
    engine = str(d.get("engine", "auto"))
    if engine not in ENGINE_NAMES:
        raise RecipeError(f"{where}.engine: {engine!r} is not one of {list(ENGINE_NAMES)}")
    name = str(d.get("name") or default_name)
    if not name or any(not (c.isalnum() or c in "-_.") for c in name):
        raise RecipeError(f"{where}.name: {name!r} must be letters, digits, '-', '_' or '.' (it names table rows)")
    try:
        sampling = SamplingParams(**{"max_new_tokens": default_tokens, **dict(d.get("sampling") or {})})
    except TypeError as exc:
        raise RecipeError(f"{where}.sampling: {exc}") from exc
    return ModelSpec(name=name, model=str(d["model"]), engine=engine, engine_kwargs=dict(d.get("engine_kwargs") or {}),
                     sampling=sampling)


def config_from_section(section: Mapping[str, Any], where: str = "rewrite_eval") -> RewriteEvalConfig:
    """Validate a recipe's ``rewrite_eval:`` mapping.

    Raises:
        RecipeError: an unknown key, a missing model, a bad engine name, no targets or no benchmarks, naming the key.
    """
    unknown = set(section) - SECTION_KEYS
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(SECTION_KEYS)}")
    for k in ("out", "targets", "guard", "benchmarks"):
        if not section.get(k):
            raise RecipeError(f"{where}: missing `{k}:`")
    rewriters = _rewriter_specs(section, where)
    specs = _named_specs(section["targets"], f"{where}.targets", "target VLMs", "target", 256)
    judge = section.get("judge")
    if judge:
        try:
            judge = JudgeConfig(**dict(judge))
        except TypeError as exc:
            raise RecipeError(f"{where}.judge: {exc} (keys: base_url, model, api_key_env, timeout, max_retries, "
                              "max_tokens)") from exc
    benches = tuple({"path": b} if isinstance(b, str) else dict(b) for b in section["benchmarks"])
    for i, b in enumerate(benches):
        bad = set(b) - {"path", "name", "split", "limit"}
        if "path" not in b or bad:
            raise RecipeError(f"{where}.benchmarks[{i}]: {{path, name?, split?, limit?}}, got {b}")
    limit = section.get("limit")
    return RewriteEvalConfig(
        out=str(section["out"]), run_name=str(section.get("run_name") or "rewrite-eval"),
        task=str(section.get("task") or "rewrite"), task_modules=tuple(section.get("task_modules") or ()),
        rewriters=rewriters, targets=specs,
        guard=model_spec(section["guard"], f"{where}.guard", "guard", 512), judge=judge or None, benchmarks=benches,
        limit=int(limit) if limit is not None else None, batch_size=int(section.get("batch_size") or 8),
        refusal_text=str(section.get("refusal_text") or REFUSAL_TEXT),
        guard_task=str(section.get("guard_task") or "guard"))


def _rewriter_specs(section: Mapping[str, Any], where: str) -> tuple[ModelSpec, ...]:
    """``rewriter:`` (one model) or ``rewriters:`` (named models, compared side by side), not both."""
    one, many = section.get("rewriter"), section.get("rewriters")
    if one and many:
        raise RecipeError(f"{where}: needs `rewriter:` (one model) or `rewriters:` (a list of named models), not both")
    if not one and not many:
        raise RecipeError(f"{where}: missing `rewriter:` (or `rewriters:`)")
    if one:
        return (model_spec(one, f"{where}.rewriter", "rewriter", 512),)
    return _named_specs(many, f"{where}.rewriters", "rewriters", "rewriter", 512)


def _named_specs(items: Any, where: str, what: str, default_name: str, default_tokens: int) -> tuple[ModelSpec, ...]:
    """A list of models whose names must differ (they name table rows)."""
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise RecipeError(f"{where}: a list of {what} ({{name, model, engine, ...}})")
    specs = tuple(model_spec(x, f"{where}[{i}]", f"{default_name}{i}", default_tokens) for i, x in enumerate(items))
    names = [x.name for x in specs]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: names must differ, got {names}")
    return specs


def rewriter_arms(cfg: RewriteEvalConfig) -> dict[str, ModelSpec]:
    """``{arm: rewriter}``: ``rewritten`` for a single rewriter, ``rewritten-<name>`` for each of several."""
    if len(cfg.rewriters) == 1:
        return {"rewritten": cfg.rewriters[0]}
    return {f"rewritten-{r.name}": r for r in cfg.rewriters}


# ------------------------------------------------------------------------------------------------ data
def load_benchmarks(specs: Iterable[Mapping[str, Any]], limit: int | None = None) -> dict[str, list[Sample]]:
    """Shard dirs -> ``{benchmark: samples}``: one benchmark per ``source`` value (``name`` renames a
    single-source dir); ``limit`` (the spec's, else the run's) keeps the first N of each.

    Raises:
        FileNotFoundError / guardrl.core.shard_reader.ShardError / SchemaError: naming the folder.
    """
    from guardrl.core.shards import iter_samples

    out: dict[str, list[Sample]] = {}
    for spec in specs:
        path = Path(spec["path"])
        if not path.exists():
            raise FileNotFoundError(f"benchmark {path}: no such folder (convert it with data_prep, e.g. "
                                    "python -m data_prep.figstep --src ... --out ...)")
        cap = spec.get("limit", limit)
        by_source: dict[str, list[Sample]] = {}
        for s in iter_samples(path, split=spec.get("split")):
            by_source.setdefault(s.source, []).append(s)
        if spec.get("name") and len(by_source) > 1:
            raise ValueError(f"benchmark {path}: `name` renames a single-source dir; it holds {sorted(by_source)}")
        for source, samples in by_source.items():
            name = str(spec.get("name") or source).replace("/", "_")
            out.setdefault(name, []).extend(samples[:cap] if cap is not None else samples)
    if not out:
        raise ValueError("no benchmark samples (empty folders?)")
    return out


def target_messages(text: str, n_images: int) -> tuple[dict[str, Any], ...]:
    """The target VLM's prompt: one plain user turn, the images first (as every task renders them)."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
    return ({"role": "user", "content": content},)


# ------------------------------------------------------------------------------------------------ phase cache
class PhaseCache:
    """``<out>/cache/<phase>.jsonl``: a header line ``{"phase", "key"}`` then one JSON record per line with a ``k``.

    A header whose key differs from ``key`` (another model or setting) discards the file; a line that does not
    parse (the torn end of a killed run) is dropped. :meth:`append` flushes and fsyncs.
    """

    def __init__(self, out: Path, phase: str, key: Mapping[str, Any]) -> None:
        self.path = out / "cache" / f"{phase}.jsonl"
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.records: dict[str, dict[str, Any]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        good: list[str] = []
        if self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            try:
                header = json.loads(lines[0]) if lines else {}
            except ValueError:
                header = {}
            if header.get("key") == self.key:
                good.append(lines[0])
                for line in lines[1:]:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue  # torn by a kill: redone
                    self.records[rec["k"]] = rec
                    good.append(line)
            elif lines:
                log.info("%s: written for other settings; starting the phase afresh", self.path)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(good or [json.dumps({"phase": phase, "key": self.key})]) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in keys if k not in self.records]

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                self.records[r["k"]] = r
            fh.flush()
            os.fsync(fh.fileno())


def build_engine(spec: ModelSpec) -> GenerationEngine:
    """The engine of ``spec`` (``openai``: :class:`guardrl.generation.openai_compat.OpenAICompatEngine`)."""
    if spec.engine == "openai":
        from guardrl.generation.openai_compat import OpenAICompatEngine

        return OpenAICompatEngine(model=spec.model, **dict(spec.engine_kwargs))
    from guardrl.core.model_folder import resolve_model
    from guardrl.generation import make_engine

    return make_engine(resolve_model(spec.model, what=f"{spec.name} model"), engine=spec.engine,
                       **dict(spec.engine_kwargs))


def _run_phase(cache: PhaseCache, todo: Sequence[tuple[str, Prompt]], engine_of: Callable[[], GenerationEngine],
               sampling: SamplingParams, batch: int, done: Callable[[str, Any], dict[str, Any]],
               desc: str) -> None:
    """Generate for the ``(key, prompt)`` pairs not yet cached, batch by batch; ``done(key, completion or
    exception) -> record``. The engine is built only when something is left to do, and closed after."""
    todo = [(k, p) for k, p in todo if k not in cache.records]
    if not todo:
        log.info("%s: complete in the cache", desc)
        return
    engine = engine_of()
    try:
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            outs, errs = isolate_failures(lambda ps: engine.generate([p for _, p in ps], sampling), chunk)
            cache.append([done(k, err if err is not None else out[0])
                          for (k, _), out, err in zip(chunk, outs, errs, strict=True)])
            log.info("%s: %d / %d", desc, min(start + batch, len(todo)), len(todo))
    finally:
        engine.close()


# ------------------------------------------------------------------------------------------------ the run
def _answers_entry(target: str, arm: str, k: str) -> str:
    """The key of an ``answers`` entry: ``<target>|<arm>|<input>``; the refuse-all arm answers every target alike
    (target ``*``)."""
    return f"*|{arm}|{k}" if arm == "refuse_all" else f"{target}|{arm}|{k}"


def _input_of(answer_key: str) -> str:
    """The input key of an ``answers`` entry (:func:`_answers_entry`)."""
    return answer_key.split("|", 2)[2]


def _answer_key(k: str, prompt: str) -> str:
    """A target's answer is cached under its input and the prompt it answers: a rewrite equal to the original
    prompt (or to another rewriter's) is asked once, and a changed rewrite is asked again."""
    return f"{k}|{hashlib.sha256(prompt.encode()).hexdigest()[:16]}"


def run_rewrite_eval(cfg: RewriteEvalConfig) -> dict[str, Any]:
    """Run (or resume) the evaluation; write ``results.json``, ``results.md``, ``predictions.jsonl`` and
    ``plots/`` under ``cfg.out``; return the results."""
    from guardrl.stages.rewrite.report import write_report
    from guardrl.stages.serve.api import guard_prompt

    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(cfg.task, cfg.task_modules)
    guard_task = get_task(cfg.guard_task, cfg.task_modules)
    benches = load_benchmarks(cfg.benchmarks, cfg.limit)
    items = [(f"{b}::{s.id}", b, s) for b, ss in benches.items() for s in ss]
    by_key = {k: (b, s) for k, b, s in items}
    ids = sorted(by_key)

    # 1. rewrite, with each rewriter
    def rewrite_done(k: str, c: Any) -> dict[str, Any]:
        if isinstance(c, BaseException):
            return {"k": k, "raw": None, "format_ok": False, "rewrite": None, "error": str(c)[:500]}
        new = rewritten_text(task, task.parse(c.text))
        return {"k": k, "raw": c.text, "format_ok": new is not None, "rewrite": new, "tokens": c.num_tokens}

    rewriters = rewriter_arms(cfg)
    rw: dict[str, PhaseCache] = {}
    for arm, spec in rewriters.items():
        rw[arm] = PhaseCache(out, f"rewrite-{spec.name}", {"task": cfg.task, **spec.key()})
        _run_phase(rw[arm], [(k, Prompt(tuple(task.prompt_messages(query_sample(s.id, s.request, None, s.images))),
                                        s.images, k)) for k, _, s in items],
                   lambda spec=spec: build_engine(spec), spec.sampling, cfg.batch_size, rewrite_done,
                   f"rewrite ({spec.name})" if len(rewriters) > 1 else "rewrite")
    asked = ("original", *rewriters)

    def prompt_text(arm: str, k: str) -> str:
        s = by_key[k][1]
        return (rw[arm].records[k]["rewrite"] or s.request) if arm in rw else s.request

    # 2. answers of each target, to the original prompt and to each rewrite
    answers: dict[str, dict[str, Any]] = {}
    for t in cfg.targets:
        cache = PhaseCache(out, f"answers-{t.name}", t.key())

        def answer_done(k: str, c: Any) -> dict[str, Any]:
            if isinstance(c, BaseException):
                return {"k": k, "answer": None, "error": str(c)[:500]}
            return {"k": k, "answer": c.text, "tokens": c.num_tokens, "finish": c.finish_reason}

        texts = {(arm, k): prompt_text(arm, k) for arm in asked for k in ids}
        asks = {(arm, k): _answer_key(k, text) for (arm, k), text in texts.items()}
        todo = {ck: Prompt(target_messages(texts[arm, k], len(by_key[k][1].images)), by_key[k][1].images, ck)
                for (arm, k), ck in asks.items()}  # one answer per distinct prompt of an input
        _run_phase(cache, list(todo.items()), lambda t=t: build_engine(t), t.sampling, cfg.batch_size, answer_done,
                   f"answers of {t.name}")
        for (arm, k), ck in asks.items():
            answers[_answers_entry(t.name, arm, k)] = cache.records[ck]
    for k in ids:
        answers[_answers_entry("*", "refuse_all", k)] = {"k": k, "answer": cfg.refusal_text}

    # 3. the guard on every distinct answer of an input (the same answer of two arms or two targets is judged once)
    gcache = PhaseCache(out, "guard", {"task": cfg.guard_task, **cfg.guard.key()})
    judged_as = {ak: _answer_key(_input_of(ak), rec["answer"]) for ak, rec in answers.items()
                 if rec.get("answer") is not None}

    def guard_done(k: str, c: Any) -> dict[str, Any]:
        if isinstance(c, BaseException):
            return {"k": k, "response": None, "format_ok": False, "error": str(c)[:500]}
        v = guard_task.parse(c.text)
        return {"k": k, "response": v.response if v.format_ok else None, "request": v.request,
                "format_ok": bool(v.format_ok), "raw": c.text}

    gtodo = {}
    for ak, gk in judged_as.items():
        s = by_key[_input_of(ak)][1]
        gtodo[gk] = guard_prompt(s.request, answers[ak]["answer"], s.images, gk, cfg.guard_task)
    _run_phase(gcache, list(gtodo.items()), lambda: build_engine(cfg.guard), cfg.guard.sampling, cfg.batch_size,
               guard_done, "guard")

    # 4. the benchmarks' judges (optional)
    judged: dict[str, dict[str, Any]] = {}
    if cfg.judge is not None:
        jcache = PhaseCache(out, "judge", {"judge": asdict(cfg.judge)})
        judge = Judge(cfg.judge)
        pending = {}
        for ak, gk in judged_as.items():
            s = by_key[_input_of(ak)][1]
            for p in protocols_for(s.source):
                pending[f"{gk}|{p.name}"] = (p, s, answers[ak]["answer"])
        for jk, (p, s, ans) in pending.items():
            if jk in jcache.records:
                continue
            parts, raw = judge.judge(p, JudgeInput(s.request, ans, s.images[0] if s.images else None, s.provenance))
            jcache.append([{"k": jk, "parts": parts, "raw": raw}])
        judged = jcache.records

    # 5. records, metrics, report
    records: list[AnswerRecord] = []
    rec_keys: list[str] = []
    preds: list[dict[str, Any]] = []
    errors: dict[str, float] = {}
    for t in cfg.targets:
        for arm in (*asked, "refuse_all"):
            for k in ids:
                bench, s = by_key[k]
                ak = _answers_entry(t.name, arm, k)
                ans = answers.get(ak, {}).get("answer")
                if ans is None:
                    ek = f"rewrite/{t.name}/{bench}/{arm}/target_errors"
                    errors[ek] = errors.get(ek, 0.0) + 1
                    continue
                g = gcache.records.get(judged_as.get(ak, ""), {})
                parts: dict[str, float] = {}
                fails = 0
                for p in protocols_for(s.source) if cfg.judge is not None else ():
                    j = judged.get(f"{judged_as.get(ak)}|{p.name}")
                    if j is None or j.get("parts") is None:
                        fails += 1
                    else:
                        parts.update(j["parts"])
                r = AnswerRecord(target=t.name, benchmark=bench, arm=arm, harmful_input=s.label_request == HARMFUL,
                                 guard_response=g.get("response"), refused=is_refusal(ans), empty=is_empty(ans),
                                 judge=parts, judge_failures=fails)
                records.append(r)
                rec_keys.append(k)
                preds.append({"target": t.name, "benchmark": bench, "arm": arm, "id": s.id, "source": s.source,
                              "subset": s.provenance.get("subset"), "label": s.label_request,
                              "prompt": cfg.refusal_text if arm == "refuse_all" else prompt_text(arm, k),
                              "rewrite_ok": rw[arm].records[k]["format_ok"] if arm in rw else None, "answer": ans,
                              "guard_response": r.guard_response, "refused": r.refused, "judge": parts,
                              "judge_failures": fails})
    # a benchmark of several subsets (VLGuard's safe_safe / safe_unsafe / unsafe, MM-SafetyBench's SD / SD_TYPO /
    # TYPO) is also reported per subset, as "<benchmark>[<subset>]"
    subsets = {b: sorted({str(s.provenance.get("subset")) for s in ss}) for b, ss in benches.items()}
    sub_of = {k: f"{b}[{s.provenance.get('subset')}]" for k, (b, s) in by_key.items() if len(subsets[b]) > 1}
    by_subset = [replace(r, benchmark=sub_of[k]) for r, k in zip(records, rec_keys, strict=True) if k in sub_of]
    metrics = {**answer_metrics([*records, *by_subset]), **errors}
    for arm, cache in rw.items():
        kept = {k: faithfulness(by_key[k][1].request, cache.records[k]["rewrite"])
                if cache.records[k]["format_ok"] else None for k in ids}
        rw_rows = [(by_key[k][0], bool(cache.records[k]["format_ok"]), kept[k]) for k in ids]
        rw_rows += [(sub_of[k], bool(cache.records[k]["format_ok"]), kept[k]) for k in ids if k in sub_of]
        metrics.update(rewrite_metrics(rw_rows, arm))
    results = {"run_name": cfg.run_name, "task": cfg.task, "arms": [*asked, "refuse_all"], "metrics": metrics,
               "config": json.loads(json.dumps(asdict(cfg), default=str)),
               "benchmarks": {b: len(ss) for b, ss in benches.items()},
               "timing": {"seconds": time.time() - t0}}
    write_report(out, results, preds)
    return results
