"""The scenario graph laid out for the viewer: every step (those inside maps too) placed in layers by networkx,
with the edges the engine follows and, per step, its call count and mean latency from the transcript."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx
from pydantic import TypeAdapter, ValidationError

from schola.errors import ConfigError
from schola.graph import AgentNode, Graph, MapNode, Node, RouteNode, ScoreNode
from schola.view.blocks import StepStats, number
from schola.view.blocks import step_of as step_of  # (where the tests and the graph code have found it)

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, INDENT = 190, 58, 30, 46, 20, 28
LOOP_BEND = 40  # how far right of its steps a loop's back edge curves (the drawing is widened to hold it)


def node_stats(lines: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """`StepStats` of these transcript lines."""
    stats = StepStats()
    for line in lines:
        stats.add(str(line.get("node", "-")), number(line.get("latency_s")), number(line.get("queue_s")))
    return stats.means()


def _detail(node: Any) -> str:
    if isinstance(node, AgentNode):
        return f"agent · {node.role}"
    if isinstance(node, MapNode):
        return "map · " + " × ".join(node.over)
    if isinstance(node, ScoreNode):
        return f"score · {node.scorer}"
    if isinstance(node, RouteNode):
        return f"route · max {node.max_iters}" if node.max_iters else "route"
    return f"{node.kind} · {getattr(node, 'reduce', '')}".rstrip(" ·")


def _add(g: nx.DiGraph, graph: Graph, prefix: str) -> tuple[list[str], list[str]]:
    """Add `graph`'s steps under `prefix`; return its entry and exit steps (qualified)."""
    q = {nid: prefix + nid for nid in graph.order}
    for nid in graph.order:
        g.add_node(q[nid], step=graph.nodes[nid], name=nid, depth=prefix.count("."))
    for a, b in graph.g.edges:
        kind = "route" if isinstance(graph.nodes[a], RouteNode) else "next"
        g.add_edge(q[a], q[b], kind=kind)
    for a, b in graph.back:
        g.add_edge(q[a], q[b], kind="loop")
    for nid, child in graph.children.items():
        entries, exits = _add(g, child, q[nid] + ".")
        for e in entries:
            g.add_edge(q[nid], e, kind="map")
        for x in exits:  # placement only: what follows a map comes after its steps
            for s in graph.g.successors(nid):
                g.add_edge(x, q[s], kind="layout")
    entries = [q[n] for n in graph.order if graph.g.in_degree(n) == 0]
    exits = [q[n] for n in graph.order if graph.g.out_degree(n) == 0]
    return entries, exits


def layout(steps: list[Any], stats: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Nodes with pixel positions and edges of one step list (YAML form, as saved in config.yaml)."""
    try:
        nodes = TypeAdapter(list[Node]).validate_python(steps)
        graph = Graph(nodes)
    except (ValidationError, ConfigError) as e:
        return {"error": f"the saved graph cannot be drawn: {str(e).splitlines()[0]}"}
    g = nx.DiGraph()
    _add(g, graph, "")
    dag = nx.DiGraph([(a, b) for a, b, k in g.edges(data="kind") if k != "loop"])
    dag.add_nodes_from(g)
    for n in nx.topological_sort(dag):  # layer = longest path from an entry
        g.nodes[n]["layer"] = max((g.nodes[p]["layer"] + 1 for p in dag.predecessors(n)), default=0)
    pos = (
        nx.multipartite_layout(g, subset_key="layer", align="horizontal") if len(g) > 1 else {n: (0.0, 0.0) for n in g}
    )
    layers: dict[int, list[str]] = {}
    for n in g:
        layers.setdefault(g.nodes[n]["layer"], []).append(n)
    widest = max((len(v) for v in layers.values()), default=1)
    indent = INDENT * max((g.nodes[n]["depth"] for n in g), default=0)  # map steps sit right of their map
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X + indent
    xs = [p[0] for p in pos.values()]
    lo, hi = min(xs, default=0.0), max(xs, default=0.0)
    out_nodes = []
    for n in g:
        x = MARGIN + (width - 2 * MARGIN - BOX_W - indent) * ((pos[n][0] - lo) / (hi - lo) if hi > lo else 0.5)
        x += INDENT * g.nodes[n]["depth"]
        y = MARGIN + g.nodes[n]["layer"] * (BOX_H + GAP_Y)
        s = stats.get(n, {})
        out_nodes.append({"id": n, "name": g.nodes[n]["name"], "detail": _detail(g.nodes[n]["step"]),
                          "kind": g.nodes[n]["step"].kind, "x": round(x, 1), "y": round(y, 1),
                          "calls": int(s.get("calls", 0)), "mean_latency_s": s.get("mean_latency_s"),
                          "mean_queue_s": s.get("mean_queue_s")})  # fmt: skip
    at = {n["id"]: n for n in out_nodes}
    edges: list[dict[str, Any]] = []
    for a, b, k in g.edges(data="kind"):
        if k == "loop":  # drawn around the right of both steps: the drawing must reach that far
            bend = max(float(at[a]["x"]), float(at[b]["x"])) + BOX_W + LOOP_BEND
            width = max(width, math.ceil(bend + MARGIN))
            edges.append({"from": a, "to": b, "kind": k, "bend_x": bend})
        elif k != "layout":
            edges.append({"from": a, "to": b, "kind": k})
    height = MARGIN * 2 + (max(layers, default=0) + 1) * (BOX_H + GAP_Y) - GAP_Y
    return {"nodes": out_nodes, "edges": edges, "width": width, "height": height, "box": [BOX_W, BOX_H]}


def scenario_graphs(scenario: Mapping[str, Any], stats: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """The episode graph and every named graph (`graphs:`) of a saved scenario config, laid out, with the steps'
    call counts and latencies (`node_stats` of the transcript)."""
    out = []
    if isinstance(scenario.get("graph"), list) and scenario["graph"]:
        out.append({"name": "graph", **layout(scenario["graph"], stats)})
    for name, spec in (scenario.get("graphs") or {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("steps"), list):
            out.append({"name": f"graphs.{name}", **layout(spec["steps"], stats)})
    drawn = {n["id"] for g in out for n in g.get("nodes", [])}
    others = {s: v for s, v in stats.items() if s not in drawn}  # stage calls and the like
    if others:
        out.append({"name": "outside the graph", "calls": others})
    return out
