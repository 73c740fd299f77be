"""The episode graph: steps from YAML, validated into a directed graph before any model call, then run.

Node kinds: `agent` (a role answers a templated prompt), `map` (run sub-steps for every item of a product of
lists, concurrently, and collect their outputs), `join` (gather and reduce values of several branches), `score`
(a registered scorer), `route` (a conditional edge on guard expressions; to an earlier step it makes a loop, which
needs `max_iters`). Steps run as soon as the steps they come `after` are settled, so independent branches run
concurrently. By default a step comes after the one listed before it.

Templates see the episode's data fields, earlier outputs, map items, `init` values and the globals: `params`,
`roles`, `seed`, `scenario`, `episode_id`, `round`, `iteration` (how many times the running step already ran in
this episode or map item: the loop counter) and `dialogue` (the replies so far, `{agent, node, text}` each).
"""

from __future__ import annotations

import graphlib
import itertools
import numbers
from collections import Counter
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from schola import templates
from schola.errors import ConfigError
from schola.scorers import Score

if TYPE_CHECKING:  # asyncio (with ssl, ~40 ms of CPU) loads when a graph first runs, not for `schola check`
    import asyncio

    from schola.roles import Reply

MAX_MAP_ITEMS = 1_000_000

GLOBALS = frozenset({"params", "roles", "seed", "scenario", "episode_id", "round", "iteration", "dialogue"})


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    after: list[str] | None = Field(None, description="steps this one waits for; default: the step before")


class AgentNode(_Node):
    kind: Literal["agent"]
    role: str = Field(description="a role name, or a template such as '{{ student.name }}'")
    prompt: str
    output: str
    sample: str | None = Field(None, description="expression for the sample index; default: the step's run count")
    sampling: dict[str, Any] = Field(default_factory=dict)
    options: list[str] | str | None = Field(
        None, description="answer options (a list, or an expression giving one) whose probabilities go to `probs`"
    )
    probs: str | None = Field(None, description='output for {"p": {option: probability}, "source": ...}')
    generate: bool = Field(
        True, description="false: no text is generated; the reply is the most likely option (needs options)"
    )


class MapNode(_Node):
    kind: Literal["map"]
    over: dict[str, str] = Field(description="name -> expression giving a list; the product is iterated")
    steps: list[Node]
    collect: dict[str, str] = Field(default_factory=dict, description="list to write -> output of a sub-step")


class JoinNode(_Node):
    kind: Literal["join"]
    inputs: dict[str, str] | list[str]
    reduce: Literal["list", "dict", "sum", "mean", "min", "max", "concat"] = "list"
    output: str


class ScoreNode(_Node):
    kind: Literal["score"]
    scorer: str
    inputs: dict[str, str] = Field(default_factory=dict, description="argument -> expression")
    params: dict[str, Any] = Field(default_factory=dict, description="literal keyword arguments")
    output: str
    record: bool = Field(True, description="count it as an episode score (metrics get its mean and CI)")
    labels: dict[str, str] = Field(default_factory=dict, description="metric labels (values may be templates)")


class CallNode(_Node):
    kind: Literal["call"]
    fn: str = Field(description="a registered scorer or a scenario's function (`lbt.answer`), called for a value")
    inputs: dict[str, str] = Field(default_factory=dict, description="argument -> expression")
    params: dict[str, Any] = Field(default_factory=dict, description="literal keyword arguments")
    output: str

    @property
    def scorer(self) -> str:
        """`fn`, under the name score steps give it (plan-time checks read both kinds alike)."""
        return self.fn


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    when: str
    to: str


class RouteNode(_Node):
    kind: Literal["route"]
    routes: list[Route]
    default: str | None = Field(None, description="where to go when no guard holds; null ends this branch")
    max_iters: int | None = Field(
        None, ge=1, le=10_000, description="times a route back to an earlier step may be taken"
    )
    init: dict[str, Any] = Field(default_factory=dict, description="initial values of the loop's accumulators")


Node = Annotated[AgentNode | MapNode | JoinNode | ScoreNode | CallNode | RouteNode, Field(discriminator="kind")]
MapNode.model_rebuild()


class EpisodeContext(Protocol):
    """What a running graph needs from the runtime."""

    async def act(
        self,
        role: str,
        prompt: str,
        *,
        node: str,
        sample: int,
        sampling: dict[str, Any],
        options: Sequence[str] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> Reply: ...

    async def score(self, scorer: str, inputs: dict[str, Any], params: dict[str, Any], *, node: str) -> Any: ...

    def record(self, name: str, score: Score, labels: dict[str, str] | None = None) -> None: ...


class StepError(Exception):
    """What a step raised (`cause`), and where in the maps the step ran (`step`: `teach[1].solve`), so every
    run-time error names its step; the innermost step that raised is kept."""

    def __init__(self, step: str, cause: Exception) -> None:
        super().__init__(f"step '{step}': {cause}")
        self.step, self.cause = step, cause


@dataclass(frozen=True)
class Read:
    """A template or expression a step reads; `field` is its key under the step (`inputs.target`)."""

    field: str
    source: str
    expression: bool

    def value(self, state: Mapping[str, Any], key: str) -> Any:
        where = f"{key}.{self.field}"
        if self.expression:
            return templates.evaluate(self.source, state, key=where)
        return templates.render(self.source, state, key=where)


def reads_of(n: Any) -> list[Read]:
    """Every template and expression a step reads, in the order it reads them: the static check, the check of the
    data, and the interpreter all take them from here."""
    if isinstance(n, AgentNode):
        out = [Read("role", n.role, False)] if "{{" in n.role else []
        out.append(Read("prompt", n.prompt, False))
        out += [Read("sample", n.sample, True)] if n.sample is not None else []
        return out + ([Read("options", n.options, True)] if isinstance(n.options, str) else [])
    if isinstance(n, MapNode):
        return [Read(f"over.{k}", v, True) for k, v in n.over.items()]
    if isinstance(n, JoinNode):
        return [Read(f"inputs.{k}", v, True) for k, v in join_inputs(n).items()]
    if isinstance(n, CallNode):
        return [Read(f"inputs.{k}", v, True) for k, v in n.inputs.items()]
    if isinstance(n, ScoreNode):
        labels = [Read(f"labels.{k}", v, False) for k, v in n.labels.items() if "{" in v]
        return [Read(f"inputs.{k}", v, True) for k, v in n.inputs.items()] + labels
    if isinstance(n, RouteNode):
        return [Read(f"routes[{i}].when", r.when, True) for i, r in enumerate(n.routes)]
    return []


def join_inputs(n: JoinNode) -> dict[str, str]:
    return n.inputs if isinstance(n.inputs, dict) else {str(i): v for i, v in enumerate(n.inputs)}


def outputs_of(node: Any) -> set[str]:
    if isinstance(node, MapNode):
        return set(node.collect)
    out = {node.output} if hasattr(node, "output") else set()
    if isinstance(node, AgentNode) and node.probs:
        out.add(node.probs)
    return out


class Graph:
    """A validated step graph (one level; `map` steps hold their own Graph).

    Args:
        nodes: the steps, as parsed from YAML.
        where: the config key of this list, for error messages.
        file: the YAML file, for error messages.
    """

    def __init__(self, nodes: list[Any], *, where: str = "scenario.graph", file: str | None = None) -> None:
        self.where, self.file = where, file
        self.nodes = {n.id: n for n in nodes}
        self.order = [n.id for n in nodes]
        if len(self.nodes) != len(nodes):
            dup = [i for i, c in Counter(n.id for n in nodes).items() if c > 1]
            raise self._error(f"duplicate step id(s): {', '.join(dup)}")
        self.succ: dict[str, list[str]] = {n: [] for n in self.order}
        self.pred: dict[str, list[str]] = {n: [] for n in self.order}
        for i, n in enumerate(nodes):
            prev = nodes[i - 1] if i else None
            after = n.after if n.after is not None else ([prev.id] if prev and prev.kind != "route" else [])
            for a in after:
                if a not in self.nodes:
                    raise self._error(f"step '{n.id}' comes after unknown step '{a}'", i, "after")
                self._edge(a, n.id)
        try:
            graphlib.TopologicalSorter(self.pred).prepare()
        except graphlib.CycleError as e:
            cycle = " -> ".join(e.args[1][:-1])
            raise self._error(f"cycle {cycle} made with 'after'; a loop needs a route step with max_iters") from None
        self.back: set[tuple[str, str]] = set()
        for i, n in enumerate(nodes):
            if not isinstance(n, RouteNode):
                continue
            for t in [r.to for r in n.routes] + ([n.default] if n.default else []):
                if t not in self.nodes:
                    raise self._error(f"route '{n.id}' goes to unknown step '{t}'", i, "routes")
                if t == n.id or n.id in self._reach(self.succ, t):
                    if n.max_iters is None:
                        raise self._error(f"route '{n.id}' loops back to '{t}' without max_iters (unbounded cycle)", i)
                    self.back.add((n.id, t))
                else:
                    self._edge(n.id, t)
        self.loop_body = {
            (r, t): (self._reach(self.succ, t) | {t}) & (self._reach(self.pred, r) | {r}) for r, t in self.back
        }
        self.children = {
            n.id: Graph(n.steps, where=f"{where}[{i}].steps", file=file)
            for i, n in enumerate(nodes)
            if isinstance(n, MapNode)
        }
        # What each step reads and its config key, found once rather than at every run of the step.
        self._reads = {n.id: reads_of(n) for n in nodes}
        self._keys = {n.id: f"{where}.{n.id}" for n in nodes}
        self._read_at = {
            n.id: [(r.field, r.source, r.expression, f"{self._keys[n.id]}.{r.field}") for r in self._reads[n.id]]
            for n in nodes
        }

    def _edge(self, a: str, b: str) -> None:
        if b not in self.succ[a]:
            self.succ[a].append(b)
            self.pred[b].append(a)

    @staticmethod
    def _reach(adjacency: Mapping[str, list[str]], start: str) -> set[str]:
        """Every step reached from `start` along `adjacency` (its successors: descendants; its predecessors:
        ancestors); `start` itself only through a cycle."""
        seen: set[str] = set()
        todo = list(adjacency[start])
        while todo:
            if (n := todo.pop()) not in seen:
                seen.add(n)
                todo.extend(adjacency[n])
        return seen

    @cached_property
    def g(self) -> Any:
        """The steps as a networkx DiGraph, for the viewer's layout. Checking and running use `succ` and `pred`
        (plain dicts): networkx costs a fifth of a second to import, which `schola check` need not pay."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(self.order)
        g.add_edges_from((a, b) for a in self.order for b in self.succ[a])
        return g

    def _error(self, message: str, index: int | None = None, field: str | None = None) -> ConfigError:
        key = self.where + (f"[{index}]" if index is not None else "") + (f".{field}" if field else "")
        return ConfigError(message, key=key, file=self.file)

    # -- static checks -----------------------------------------------------------------------
    def check(self, *, known: set[str], roles: set[str], scorers: set[str]) -> None:
        """Check every step before any model call: roles, scorers, templates, and that each name a step reads is
        produced by an earlier step, the episode's data, a map item or a global."""
        known = known | set(self.init())
        for i, nid in enumerate(self.order):
            n = self.nodes[nid]
            for out in sorted(outputs_of(n) & GLOBALS):
                raise self._error(f"step '{nid}' writes '{out}', a name every template sees; choose another name", i)
            avail = known | GLOBALS | {o for a in self._reach(self.pred, nid) for o in outputs_of(self.nodes[a])}
            if isinstance(n, AgentNode):
                if "{{" not in n.role and n.role not in roles:
                    raise self._error(
                        f"unknown role '{n.role}'; the scenario has: {', '.join(sorted(roles))}", i, "role"
                    )
                if (n.options is None) != (n.probs is None):
                    raise self._error(
                        "options and probs go together: the options, and the output for their probabilities", i
                    )
                if not n.generate and n.options is None:
                    raise self._error("generate: false needs options (the reply is then the most likely option)", i)
            elif isinstance(n, ScoreNode | CallNode) and n.scorer not in scorers:
                raise self._error(f"unknown scorer '{n.scorer}'; registered: {', '.join(sorted(scorers))}", i, "scorer")
            for r in reads_of(n):
                templates.check(
                    r.source, is_expression=r.expression, key=f"{self.where}[{i}].{r.field}", file=self.file
                )
                missing = templates.variables(r.source, is_expression=r.expression) - avail
                if missing:
                    raise self._error(
                        f"step '{nid}' reads {', '.join(sorted(missing))}, which no earlier step, data field or "
                        f"map item provides (available: {', '.join(sorted(avail - GLOBALS))})",
                        i,
                        r.field,
                    )
            if isinstance(n, MapNode):
                child = self.children[nid]
                child.check(known=avail | set(n.over), roles=roles, scorers=scorers)
                produced = {o for s in child.nodes.values() for o in outputs_of(s)}
                for k, v in n.collect.items():
                    if v not in produced:
                        raise self._error(
                            f"map '{nid}' collects '{v}', which none of its steps outputs", i, f"collect.{k}"
                        )

    @cached_property
    def output_names(self) -> list[str]:
        """What the steps write, sorted (an episode's record lists them): found once per graph."""
        return sorted({o for n in self.nodes.values() for o in outputs_of(n)})

    def walk(self) -> Iterator[Any]:
        """Every step, those inside maps included."""
        for nid in self.order:
            yield self.nodes[nid]
            if nid in self.children:
                yield from self.children[nid].walk()

    def score_steps(self) -> Iterator[tuple[str, ScoreNode | CallNode]]:
        """(config key, step) of every score and call step, those inside maps included."""
        for i, nid in enumerate(self.order):
            n = self.nodes[nid]
            if isinstance(n, ScoreNode | CallNode):
                yield f"{self.where}[{i}]", n
            if nid in self.children:
                yield from self.children[nid].score_steps()

    def init(self) -> dict[str, Any]:
        """Initial state the routes declare (`init:` on a route), those inside maps included."""
        out: dict[str, Any] = {}
        for n in self.walk():
            if isinstance(n, RouteNode):
                out.update(n.init)
        return out

    def reads(self) -> set[str]:
        """Every name a template or expression of this graph reads (for checks against the data)."""
        return {
            name
            for n in self.walk()
            for r in reads_of(n)
            for name in templates.variables(r.source, is_expression=r.expression)
        }

    # -- running -----------------------------------------------------------------------------
    async def run(self, state: MutableMapping[str, Any], ctx: EpisodeContext, path: str = "") -> None:
        """Run the steps on `state` (read and written in place), concurrently where the graph allows.

        `path` is where in the maps this graph runs (`teach[1].`), for the transcript's node names."""
        state.setdefault("dialogue", [])
        if len(self.order) == 1:  # the common map body: no scheduling needed
            await self._step(self.order[0], state, ctx, 0, path)
            return
        import asyncio

        pending = set(self.order)
        active: dict[str, bool] = {n: not self.pred[n] for n in self.order}
        runs: Counter[str] = Counter()
        running: dict[asyncio.Future[Any], str] = {}
        try:
            while True:
                ready = []
                for nid in [n for n in self.order if n in pending and n not in running.values()]:
                    if any(p in pending for p in self.pred[nid]):
                        continue
                    if active[nid]:
                        ready.append(nid)
                    else:
                        pending.discard(nid)  # skipped: no active edge reaches it
                if len(ready) == 1 and not running:  # nothing runs beside it (a chain): no task needed to wait
                    nid = ready[0]
                    runs[nid] += 1
                    self._settled(nid, await self._step(nid, state, ctx, runs[nid] - 1, path), pending, active)
                    continue
                for nid in ready:
                    running[asyncio.ensure_future(self._step(nid, state, ctx, runs[nid], path))] = nid
                    runs[nid] += 1
                if not running:
                    return
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    nid = running.pop(task)
                    self._settled(nid, task.result(), pending, active)
        finally:
            for task in running:
                task.cancel()

    def _settled(self, nid: str, result: Any, pending: set[str], active: dict[str, bool]) -> None:
        """Step `nid` has run (a route's `result`: the step it chose): which steps it makes active."""
        pending.discard(nid)
        node = self.nodes[nid]
        if not isinstance(node, RouteNode):
            for s in self.succ[nid]:
                active[s] = True
        elif result is not None and (nid, result) in self.back:
            for m in self.loop_body[(nid, result)]:
                pending.add(m)
                active[m] = False
            active[result] = True
        elif result is not None:
            active[result] = True

    async def _step(self, nid: str, state: MutableMapping[str, Any], ctx: EpisodeContext, run: int, path: str) -> Any:
        """Run step `nid` on `state`; what it raises is a StepError naming the step (the innermost one that raised)."""
        n = self.nodes[nid]
        try:
            key = self._keys[nid]
            state["iteration"] = run  # read by this step's templates, rendered before any await
            if isinstance(n, RouteNode):
                return self._route(n, state, key, run)
            read = {  # (Read.value, without a call and a key built per read)
                field: templates.evaluate(source, state, key=at)
                if expression
                else templates.render(source, state, key=at)
                for field, source, expression, at in self._read_at[nid]
            }
            if isinstance(n, AgentNode):
                role = read.get("role", n.role)
                prompt = read["prompt"]
                sample = int(read["sample"]) if "sample" in read else run
                options = read.get("options", n.options)
                if options is not None and (not isinstance(options, (list, tuple)) or not options):
                    raise ConfigError(f"options must give a non-empty list, got {options!r}", key=f"{key}.options")
                node = path + nid  # e.g. teach[1].exam[2].solve: where in the maps this reply is
                listed = [str(o) for o in options] if options else None
                if n.generate:  # (an EpisodeContext need not take `generate`; and a ** call took 0.3 us)
                    reply = await ctx.act(role, prompt, node=node, sample=sample, sampling=n.sampling, options=listed,
                                          state=state)  # fmt: skip
                else:
                    reply = await ctx.act(role, prompt, node=node, sample=sample, sampling=n.sampling, options=listed,
                                          state=state, generate=False)  # type: ignore[call-arg]  # fmt: skip
                text = reply if isinstance(reply, str) else reply.text
                data = None if isinstance(reply, str) else reply.data
                state[n.output] = data if data is not None else text
                if n.probs:
                    state[n.probs] = {
                        "p": getattr(reply, "option_probs", None),
                        "source": getattr(reply, "probs_source", None),
                    }
                state["dialogue"].append({"agent": role, "node": node, "text": text})
            elif isinstance(n, ScoreNode):
                args = {k: read[f"inputs.{k}"] for k in n.inputs}
                labels = {k: read.get(f"labels.{k}", v) for k, v in n.labels.items()}
                score = await ctx.score(n.scorer, args, n.params, node=path + nid)
                value = score.value if isinstance(score, Score) else score  # a bare number is Score(number)
                state[n.output] = value
                if n.record:
                    if value is not None and not isinstance(value, numbers.Real):  # a score is a number (or None)
                        raise ConfigError(
                            f"step '{path + nid}': scorer '{n.scorer}' returned a {type(value).__name__}, which cannot be "
                            "recorded as a score (a Score, a number, a boolean or null); use kind: call for a value",
                            key=f"{key}.record",
                        )
                    ctx.record(
                        n.output,
                        score if isinstance(score, Score) else Score(None if value is None else float(value)),
                        labels or None,
                    )
            elif isinstance(n, CallNode):
                out = await ctx.score(n.fn, {k: read[f"inputs.{k}"] for k in n.inputs}, n.params, node=path + nid)
                state[n.output] = out.value if isinstance(out, Score) else out
            elif isinstance(n, JoinNode):
                state[n.output] = join(n, {k: read[f"inputs.{k}"] for k in join_inputs(n)})
            elif isinstance(n, MapNode):
                await self._map(n, {k: read[f"over.{k}"] for k in n.over}, state, ctx, key, path)
            return None
        except StepError:
            raise
        except Exception as e:
            raise StepError(path + nid, e) from e

    async def _map(
        self,
        n: MapNode,
        over: dict[str, Any],
        state: MutableMapping[str, Any],
        ctx: EpisodeContext,
        key: str,
        path: str,
    ) -> None:
        lists = {}
        for k, value in over.items():
            v = n.over[k]
            if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
                raise ConfigError(
                    f"'{v}' must give a list to map over, got {type(value).__name__}", key=f"{key}.over.{k}"
                )
            lists[k] = list(itertools.islice(value, MAX_MAP_ITEMS + 1))
        size = 1
        for values in lists.values():
            size *= len(values)
        if size > MAX_MAP_ITEMS:
            raise ConfigError(f"the map has {size:,} items; at most {MAX_MAP_ITEMS:,}", key=f"{key}.over")
        child = self.children[n.id]
        single = child.order[0] if len(child.order) == 1 else None
        parent_dialogue = state["dialogue"]

        async def one(i: int, values: tuple[Any, ...]) -> tuple[dict[str, Any], list[Any]]:
            # Each item works on its own copy of the state: items never see each other's outputs.
            scope = dict(state)
            scope.update(zip(lists, values))
            scope["dialogue"] = list(parent_dialogue)
            where = f"{path}{n.id}[{i}]."
            if single:  # (Graph.run would only pass it on)
                await child._step(single, scope, ctx, 0, where)
            else:
                await child.run(scope, ctx, where)
            return {k: scope.get(v) for k, v in n.collect.items()}, scope["dialogue"][len(parent_dialogue) :]

        from schola.aio import gather_all

        results = await gather_all([one(i, v) for i, v in enumerate(itertools.product(*lists.values()))])
        for k in n.collect:
            state[k] = [r[k] for r, _ in results]
        for _, said in results:  # the items' replies join the episode's dialogue in item order
            parent_dialogue.extend(said)

    def _route(self, n: RouteNode, state: MutableMapping[str, Any], key: str, run: int) -> str | None:
        # `run` counts earlier visits of this route in the episode: each of them took the loop.
        for r, guard in zip(n.routes, self._reads[n.id]):  # in order, and only until one holds
            if guard.value(state, key) and ((n.id, r.to) not in self.back or run < (n.max_iters or 0)):
                return r.to
        return n.default


def join(n: JoinNode, values: dict[str, Any]) -> Any:
    """The step's inputs (evaluated, by name) reduced."""
    if n.reduce == "dict":
        return values
    items = list(values.values())
    if len(items) == 1 and isinstance(items[0], (list, tuple)):
        items = list(items[0])
    if n.reduce == "list":
        return items
    if n.reduce == "concat":
        return "\n\n".join(str(v) for v in items)
    nums = [float(v) for v in items if v is not None]
    if n.reduce == "sum":
        return sum(nums)
    if n.reduce == "mean":
        return sum(nums) / len(nums) if nums else None
    return (min if n.reduce == "min" else max)(nums) if nums else None
