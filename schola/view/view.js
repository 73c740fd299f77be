"use strict";
// schola view: renders the JSON block #schola-data. Every string from a run is untrusted (model output, data):
// the DOM is built with createElement and text nodes only; no markup is ever parsed from data.
(() => {
  let DATA = JSON.parse(document.getElementById("schola-data").textContent);  // replaced as a live page polls
  const PAGE = 100;
  const SAFE_ATTRS = new Set(["id", "title", "colspan", "type", "placeholder", "min", "max", "step", "value", "for",
    "data-key", "data-episode", "aria-label"]);
  const tabsOf = (data) => (data.kind === "sweep" ? ["sweep"] : []).concat(["run", "episodes", "graph"]);
  let TABS = tabsOf(DATA);
  // report.html#episodes opens that tab; #episode=<id> (in a sweep #run=<name>&episode=<id>) opens that episode,
  // on a live page as soon as it is written (`want` waits for it)
  function fromHash(hash) {
    const h = hash.replace(/^#/, ""), want = { run: null, episode: null };
    for (const part of h.split("&")) {
      const at = part.indexOf("="), key = at < 0 ? part : part.slice(0, at);
      let value = at < 0 ? "" : part.slice(at + 1);
      try { value = decodeURIComponent(value); } catch (e) { /* a hand-typed % stays as written */ }
      if (key === "run" || key === "episode") want[key] = value;
    }
    return want.episode != null ? { tab: "episodes", want } : { tab: TABS.includes(h) ? h : TABS[0], want: null };
  }
  const opened = fromHash(location.hash);
  const state = { run: 0, tab: opened.tab, episode: null, want: opened.want };
  let runs = DATA.runs;
  const freshUi = () => ({ sort: { key: "index", dir: 1 }, page: 0, text: "", scoreKey: "", min: "", max: "" });
  let ui = runs.map(freshUi);

  // -- DOM helpers: text only ---------------------------------------------------------------
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = String(v);
      else if (k === "open") e.open = !!v;
      else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
      else if (SAFE_ATTRS.has(k)) e.setAttribute(k, String(v));
      else throw new Error("attribute not allowed: " + k);
    }
    for (const kid of kids.flat(Infinity)) if (kid != null && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
    return e;
  }
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text != null) e.textContent = String(text);
    return e;
  }
  function image(uri, alt) {  // only PNG data URIs written by schola itself
    const img = el("img", { title: alt });
    if (/^data:image\/png;base64,[A-Za-z0-9+/=]+$/.test(uri)) img.src = uri;
    img.alt = String(alt);
    return img;
  }
  const num = (v) => typeof v === "number" && Number.isFinite(v);
  function fmt(v) {
    if (v == null) return "–";
    if (num(v)) return Number.isInteger(v) ? String(v) : v.toFixed(3);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  const fmt3 = (v) => (num(v) ? v.toFixed(3) : fmt(v));
  const ms = (s) => (num(s) ? (s * 1000).toFixed(1) + " ms" : "–");
  const statusClass = (s) => "badge status-" + String(s).replace(/[^a-z_]/g, "");
  const labelText = (labels) => Object.entries(labels || {}).map(([k, v]) => k + "=" + v).join(", ");
  function table(headers, rows, props) {
    return el("table", props || {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.label || h)))),
      el("tbody", {}, rows));
  }
  const cell = (v, isNum) => el("td", { class: isNum ? "num" : "" }, fmt(v));
  // A run's episodes, one count in one meaning wherever shown: finished of the planned total, then the rest.
  function countText(run) {
    const c = run.counts || {};
    const rest = [["failed", c.failed], ["unfinished", c.unfinished], ["not started", c.not_started]]
      .filter(([, v]) => v).map(([k, v]) => v + " " + k);
    return fmt(c.finished) + " of " + fmt(c.total) + " episodes finished" + (rest.length ? " (" + rest.join(", ") + ")" : "");
  }
  const timing = (service, queue) => "service " + ms(service) + (num(queue) && queue > 0 ? " · queued " + ms(queue) : "");
  function busy(on) { if (on) document.body.dataset.busy = "1"; else delete document.body.dataset.busy; }

  // -- compressed blocks (gzip+base64), decoded on demand -----------------------------------
  function bytes(b64) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(b64);
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  async function unpack(b64) {
    if (typeof DecompressionStream === "undefined") throw new Error("this browser has no DecompressionStream; open the report in a current Chrome, Firefox or Safari");
    const stream = new Blob([bytes(b64)]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }
  const freshCache = () => ({ index: null, chunks: [], blob: null });
  let cache = runs.map(freshCache);
  async function indexOf(r) {
    const c = cache[r];
    if (!c.index) c.index = unpack(runs[r].episodes.index).then((rows) => rows.map((row, i) => Object.assign(row, { index: i })));
    return c.index;
  }
  function chunk(r, i) {
    const c = cache[r];
    if (!c.chunks[i]) c.chunks[i] = unpack(runs[r].episodes.chunks[i]);
    return c.chunks[i];
  }
  async function searchText(r) {  // episode id -> every string of its conversation, lower-cased
    const c = cache[r];
    if (!c.blob) {
      c.blob = Promise.all(runs[r].episodes.chunks.map((_, i) => chunk(r, i))).then((chunks) => {
        const out = new Map();
        for (const ch of chunks) for (const [id, ep] of Object.entries(ch)) {
          const parts = [id];
          (function walk(o) {
            if (o == null) return;
            if (typeof o === "object") { for (const v of Object.values(o)) walk(v); } else parts.push(String(o));
          })(ep);
          out.set(id, parts.join("\n").toLowerCase());
        }
        return out;
      });
    }
    return c.blob;
  }

  // -- frame --------------------------------------------------------------------------------
  const main = document.getElementById("main");
  function frame() {
    document.getElementById("tabs").replaceChildren(...TABS.map((t) =>
      el("button", { class: t === state.tab ? "active" : "", id: "tab-" + t, onclick: () => go(t) }, t)));
    const picker = document.getElementById("run-picker");
    if (runs.length > 1) {
      const sel = el("select", { id: "run-select", "aria-label": "run",
        onchange: (e) => { state.run = Number(e.target.value); state.episode = null; state.want = null; if (state.tab === "sweep") state.tab = "run"; render(); } },
        runs.map((r, i) => { const o = el("option", { value: i }, r.name + " — " + r.scenario); o.selected = i === state.run; return o; }));
      picker.replaceChildren(sel);
    }
  }
  function setHash(hash) { try { history.replaceState(null, "", hash); } catch (e) { /* some file:// hosts refuse */ } }
  function go(tab) { state.tab = tab; state.episode = null; state.want = null; setHash("#" + tab); render(); }
  // The link to one episode: this page's address with #episode=<id> (and the run, where the page holds several).
  function linkTo(r, id) {
    const hash = (runs.length > 1 ? "run=" + encodeURIComponent(runs[r].name) + "&" : "") + "episode=" + encodeURIComponent(id);
    return location.href.replace(/#.*$/, "") + "#" + hash;
  }
  function copyLink(r, id) {
    const link = linkTo(r, id);
    return el("button", { class: "copy-link", title: link, "aria-label": "copy a link to episode " + id, onclick: (ev) => {
      ev.stopPropagation();
      const b = ev.currentTarget, said = (text) => { b.textContent = text; setTimeout(() => { b.textContent = "copy link"; }, 1500); };
      const clip = navigator.clipboard;  // absent where the page is not a secure context: the link stays in the title
      if (clip) clip.writeText(link).then(() => said("copied"), () => said("see title"));
      else said("see title");
    } }, "copy link");
  }
  function openEpisode(r, i, id) { state.run = r; state.episode = i; state.want = null; setHash(linkTo(r, id).replace(/^[^#]*/, "")); }
  // The episode a link asked for, once its run holds it (a live run may not have written it yet): true when open.
  async function openWanted() {
    const w = state.want;
    if (w.run != null) {
      const r = runs.findIndex((x) => x.name === w.run);
      if (r < 0) return false;
      state.run = r;
    }
    const i = (await indexOf(state.run)).findIndex((e) => e.id === w.episode);
    if (i >= 0) openEpisode(state.run, i, w.episode);
    return i >= 0;
  }
  async function render() {
    busy(true);
    try {
      if (state.want && runs.length) await openWanted();  // before the frame: the link may pick another run
      frame();
      if (!runs.length && state.tab !== "sweep") main.replaceChildren(el("p", { class: "muted", id: "waiting" }, "no run below this folder yet"));
      else if (state.tab === "sweep") main.replaceChildren(sweepPage());
      else if (state.tab === "run") main.replaceChildren(runPage(runs[state.run]));
      else if (state.tab === "graph") main.replaceChildren(graphPage(runs[state.run]));
      else if (state.episode != null) main.replaceChildren(await episodePage(state.run, state.episode));
      else if (state.want) {
        const w = state.want, where = w.run != null ? "run '" + w.run + "'" : "this run";
        main.replaceChildren(el("p", { class: "error", id: "episode-missing" }, "no episode '" + w.episode + "' in " + where + (DATA.live ? " yet: it opens when written" : "")),
          await episodesPage(state.run));
      } else main.replaceChildren(await episodesPage(state.run));
    } catch (e) {
      main.replaceChildren(el("p", { class: "error" }, "cannot show this page: " + e.message));
    } finally {
      busy(false);
      if (!document.body.dataset.ready) document.body.dataset.readyMs = String(Math.round(performance.now()));
      document.body.dataset.ready = "1";
    }
  }

  // -- run page -------------------------------------------------------------------------------
  function metricTable(rows) {
    return table([{ label: "metric" }, { label: "labels" }, { label: "value", num: 1 }, { label: "95% CI", num: 1 }, { label: "n", num: 1 }],
      rows.map((m) => el("tr", {}, el("td", {}, m.name), el("td", {}, labelText(m.labels)), el("td", { class: "num" }, fmt3(m.value)),
        el("td", { class: "num" }, m.ci_low == null ? "–" : "[" + fmt3(m.ci_low) + ", " + fmt3(m.ci_high) + "]"), cell(m.n, 1))),
      { id: "metrics" });
  }
  function usageTable(run) {
    const usage = run.usage || {}, roles = run.roles || {};
    const row = (name, u, role) => el("tr", {}, el("td", {}, name), el("td", {}, role ? fmt(role.role) : ""),
      el("td", { class: "persona" }, role ? role.persona : ""), cell(u.requests, 1), cell(u.prompt_tokens, 1),
      cell(u.completion_tokens, 1), cell(u.cache_hits, 1), el("td", { class: "num" }, "$" + (u.cost_usd || 0).toFixed(4)),
      el("td", { class: "num" }, u.requests && num(u.latency_s) ? ms(u.latency_s / u.requests) : "–"),
      el("td", { class: "num" }, u.requests && num(u.queue_s) ? ms(u.queue_s / u.requests) : "–"));
    const rows = Object.entries(usage.by_role || {}).map(([name, u]) => row(name, u, roles[name]));
    if (usage.total) rows.push(row("total", usage.total));
    if (usage.spent && usage.total && usage.spent.requests !== usage.total.requests) rows.push(row("spent by the last session", usage.spent));
    return table(["role", "kind", "persona", { label: "requests", num: 1 }, { label: "prompt tokens", num: 1 },
      { label: "completion tokens", num: 1 }, { label: "cache hits", num: 1 }, { label: "cost", num: 1 },
      { label: "mean service (request)", num: 1 }, { label: "mean queue wait", num: 1 }], rows, { id: "usage" });
  }
  function runPage(run) {
    const st = run.status || {}, total = (run.usage || {}).total || {};
    return el("div", { id: "run-page" },
      el("h1", {}, run.scenario + (run.variant ? " · " + run.variant : ""), " ", el("span", { class: statusClass(st.status), id: "run-status" }, st.status || "?")),
      run.description ? el("p", { class: "muted" }, run.description) : null,
      st.message ? el("p", { class: "error" }, st.message) : null,
      st.hint ? el("p", {}, el("code", {}, st.hint)) : null,
      el("p", { class: "muted", id: "run-summary" }, run.dir, " · ", countText(run), " · ",
        fmt(total.tokens || 0), " tokens · $", (total.cost_usd || 0).toFixed(4), " · ", fmt(run.wall_s), " s"),
      el("h2", {}, "Metrics"), run.metrics.length ? metricTable(run.metrics) : el("p", { class: "muted" }, "no metrics"),
      run.caption ? el("p", { class: "muted", id: "metrics-caption" }, run.caption) : null,
      (run.findings || []).length ? [el("h2", {}, "Findings"), el("ul", { id: "findings" }, run.findings.map((f) => el("li", {}, f)))] : null,
      el("h2", {}, "Usage by role"), usageTable(run),
      run.plots.length ? [el("h2", {}, "Plots"), run.plots.map((p) => el("figure", {},
        p.uri ? image(p.uri, p.name) : el("p", { class: "muted" }, p.note), el("figcaption", { class: "muted" }, p.name)))] : null,
      run.exports.length ? [el("h2", {}, "Exports"), el("ul", {}, run.exports.map((x) => el("li", {}, fmt(x))))] : null,
      el("h2", {}, "Config"),
      el("details", { id: "config" }, el("summary", {}, "config.yaml (secrets redacted)"), el("pre", {}, run.config_yaml || "(none)")));
  }

  // -- episodes -----------------------------------------------------------------------------
  async function episodesPage(r) {
    // score_columns: the keys shown as columns; past a few (a label per episode), the rest is one text cell per row
    const run = runs[r], s = ui[r], keys = run.episodes.score_keys, shown = run.episodes.score_columns || keys;
    const others = shown.length < keys.length;
    const all = await indexOf(r);
    let rows = all;
    if (s.scoreKey && (s.min !== "" || s.max !== "")) {
      rows = rows.filter((e) => {
        const v = e.scores[s.scoreKey];
        return num(v) && (s.min === "" || v >= Number(s.min)) && (s.max === "" || v <= Number(s.max));
      });
    }
    if (s.text.trim()) {
      const needle = s.text.trim().toLowerCase(), text = await searchText(r);
      rows = rows.filter((e) => (text.get(e.id) || e.id.toLowerCase()).includes(needle));
    }
    const value = (e, key) => key.startsWith("score:") ? e.scores[key.slice(6)] : e[key];
    const { key, dir } = s.sort;
    rows = rows.slice().sort((a, b) => {
      const x = value(a, key), y = value(b, key);
      if (x == null || y == null) return x == null ? (y == null ? 0 : 1) : -1;
      if (num(x) && num(y)) return (x - y) * dir;
      return String(x).localeCompare(String(y), undefined, { numeric: true }) * dir;
    });
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    s.page = Math.min(s.page, pages - 1);
    const cols = [["id", "id"], ["round", "round", 1], ["status", "status"]].concat(shown.map((k) => ["score:" + k, k, 1]),
      others ? [["other_scores", "other scores"]] : [], [["tokens", "tokens", 1], ["steps", "steps", 1], ["latency_s", "service", 1], ["queue_s", "queue wait", 1], ["cached", "cache hits", 1]]);
    const head = el("tr", {}, cols.map(([k, label, isNum]) => el("th", {
      class: (isNum ? "num " : "") + (k === key ? (dir > 0 ? "asc" : "desc") : ""), "data-key": k,
      onclick: () => { s.sort = { key: k, dir: k === key ? -dir : 1 }; render(); },
    }, label)), el("th", {}, "link"));
    const body = rows.slice(s.page * PAGE, (s.page + 1) * PAGE).map((e) => el("tr", {
      class: "clickable", "data-episode": e.id, onclick: () => { openEpisode(r, e.index, e.id); render(); },
    }, el("td", {}, e.id), cell(e.round, 1), el("td", {}, el("span", { class: statusClass(e.status) }, e.status)),
      shown.map((k) => cell(e.scores[k], 1)), others ? cell(e.other_scores) : null, cell(e.tokens, 1), cell(e.steps, 1), el("td", { class: "num" }, ms(e.latency_s)), el("td", { class: "num" }, ms(e.queue_s)), cell(e.cached, 1), el("td", {}, copyLink(r, e.id))));
    const apply = (patch) => { Object.assign(s, patch, { page: 0 }); render(); };
    let timer = null;
    const search = el("input", { type: "search", id: "filter-text", placeholder: "text in ids, inputs, prompts, replies",
      oninput: (e) => { clearTimeout(timer); busy(true); const v = e.target.value; timer = setTimeout(() => apply({ text: v }), 250); } });
    search.value = s.text;
    const scoreSel = el("select", { id: "filter-score", onchange: (e) => apply({ scoreKey: e.target.value }) },
      el("option", { value: "" }, "score…"), keys.map((k) => { const o = el("option", { value: k }, k); o.selected = k === s.scoreKey; return o; }));
    const bound = (id, name) => { const i = el("input", { type: "number", id, step: "any", placeholder: name,
      onchange: (e) => apply({ [name]: e.target.value }) }); i.value = s[name]; return i; };
    const pager = el("div", { class: "pager" },
      el("button", { id: "page-prev", onclick: () => { s.page = Math.max(0, s.page - 1); render(); } }, "‹ previous"),
      el("span", { id: "page-info" }, "page " + (s.page + 1) + " of " + pages),
      el("button", { id: "page-next", onclick: () => { s.page = Math.min(pages - 1, s.page + 1); render(); } }, "next ›"));
    const page = el("div", { id: "episodes-page" },
      el("h1", {}, "Episodes ", el("span", { class: "muted" }, run.scenario)),
      el("div", { class: "controls" }, search, scoreSel, bound("filter-min", "min"), "≤ score ≤", bound("filter-max", "max"),
        el("span", { id: "episode-count", class: "muted" }, rows.length + " of " + all.length + " listed · " + countText(run))),
      el("table", { id: "episodes", class: "sortable" }, el("thead", {}, head), el("tbody", {}, body)), pager);
    if (s.text) setTimeout(() => { const i = document.getElementById("filter-text"); if (i && document.activeElement !== i) { i.focus(); i.setSelectionRange(i.value.length, i.value.length); } });
    return page;
  }

  // Steps in order, grouped by map item (`teach[1].exam[2].solve`); repeated steps are numbered loop iterations,
  // from 0 as templates' `iteration` is (the transcript line's own where it has one).
  function conversation(steps) {
    const root = { entries: [], maps: new Map(), seen: new Map() };
    for (const step of steps) {
      const parts = String(step.node || "-").split(".");
      let box = root;
      for (const part of parts.slice(0, -1)) {
        const m = /^(.*)\[(\d+)\]$/.exec(part);
        if (!m) continue;
        let group = box.maps.get(m[1]);
        if (!group) { group = { type: "map", name: m[1], items: new Map() }; box.maps.set(m[1], group); box.entries.push(group); }
        if (!group.items.has(m[2])) group.items.set(m[2], { entries: [], maps: new Map(), seen: new Map() });
        box = group.items.get(m[2]);
      }
      const leaf = parts[parts.length - 1];
      box.seen.set(leaf, (box.seen.get(leaf) || 0) + 1);
      box.entries.push({ type: "step", step, iteration: box.seen.get(leaf), leaf });
    }
    return root;
  }
  function renderBox(box, roles) {
    return box.entries.map((entry) => {
      if (entry.type === "map") {
        const items = [...entry.items.entries()].sort((a, b) => Number(a[0]) - Number(b[0]));
        return el("details", { class: "map", open: true }, el("summary", {}, "map " + entry.name + " · " + items.length + " items"),
          items.map(([i, item]) => el("details", { class: "item", open: items.length <= 6 },
            el("summary", {}, entry.name + "[" + i + "]"), renderBox(item, roles))));
      }
      const t = entry.step, role = roles[t.agent] || {};
      const loops = box.seen.get(entry.leaf) > 1;
      return el("div", { class: "step" },
        el("div", { class: "head" }, el("span", { class: "node" }, t.node), el("strong", { class: "agent" }, t.agent),
          role.persona ? el("span", { class: "persona" }, role.persona) : null,
          loops ? el("span", { class: "badge iteration" }, "iteration " + (num(t.iteration) ? t.iteration : entry.iteration - 1)) : null,
          el("span", { class: "badge" }, "sample " + fmt(t.sample)),
          el("span", { class: "badge" }, fmt(t.prompt_tokens) + " + " + fmt(t.completion_tokens) + " tokens"),
          el("span", { class: "badge" }, timing(t.latency_s, t.queue_s)),
          t.cached ? el("span", { class: "badge hit" }, "cache hit") : null,
          t.option_probs ? el("span", { class: "badge" }, "p " + JSON.stringify(t.option_probs) + " (" + fmt(t.probs_source) + ")") : null),
        el("details", { class: "prompt" }, el("summary", {}, "prompt"), el("pre", {}, fmt(t.prompt))),
        el("details", { class: "reply", open: true }, el("summary", {}, "reply"), el("pre", {}, fmt(t.text))));
    });
  }
  async function episodePage(r, i) {
    const run = runs[r], e = (await indexOf(r))[i], ep = (await chunk(r, e.chunk))[e.id] || { steps: [] };
    return el("div", { id: "episode-page" },
      el("button", { id: "back", onclick: () => { state.episode = null; setHash("#episodes"); render(); } }, "‹ episodes"),
      el("h1", {}, "Episode ", el("span", { id: "episode-id" }, e.id), " ", el("span", { class: statusClass(e.status) }, e.status), " ", copyLink(r, e.id)),
      el("p", { class: "muted" }, "round " + fmt(e.round) + " · " + e.steps + " replies · " + e.tokens + " tokens · " + timing(e.latency_s, e.queue_s) + " · " + e.cached + " cache hits"),
      ep.error ? el("p", { id: "episode-error", class: "error" }, "failed at step " + ep.error.step + ": " + ep.error.message) : null,
      Object.keys(e.scores).length ? table(["score", { label: "value", num: 1 }],
        Object.entries(e.scores).map(([k, v]) => el("tr", {}, el("td", {}, k), cell(v, 1)))) : null,
      el("details", {}, el("summary", {}, "inputs"), el("pre", {}, JSON.stringify(ep.inputs, null, 2))),
      el("details", {}, el("summary", {}, "outputs"), el("pre", {}, JSON.stringify(ep.outputs, null, 2))),
      el("h2", {}, "Conversation"), el("div", { id: "conversation" }, renderBox(conversation(ep.steps), run.roles || {})));
  }

  // -- graph ----------------------------------------------------------------------------------
  function drawGraph(g) {
    const [w, h] = g.box, at = new Map(g.nodes.map((n) => [n.id, n]));
    const root = svg("svg", { width: g.width, height: g.height, viewBox: "0 0 " + g.width + " " + g.height, class: "graph" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7785" }));
    defs.append(marker); root.append(defs);
    for (const edge of g.edges) {
      const a = at.get(edge.from), b = at.get(edge.to);
      if (!a || !b) continue;
      let d;
      if (edge.kind === "loop") {
        const bend = num(edge.bend_x) ? edge.bend_x : Math.max(a.x, b.x) + w + 40;  // the layout widened the drawing to it
        d = `M${a.x + w},${a.y + h / 2} C${bend},${a.y + h / 2} ${bend},${b.y + h / 2} ${b.x + w},${b.y + h / 2}`;
      } else if (b.y - a.y > h * 2) {  // past the layers between: around their left side
        const x = Math.min(a.x, b.x) - 18;
        d = `M${a.x},${a.y + h / 2} C${x},${a.y + h / 2} ${x},${b.y + h / 2} ${b.x},${b.y + h / 2}`;
      } else d = `M${a.x + w / 2},${a.y + h} L${b.x + w / 2},${b.y}`;
      root.append(svg("path", { d, class: "edge " + edge.kind, "marker-end": "url(#arrow)" }));
    }
    for (const n of g.nodes) {
      const group = svg("g", { class: "node", transform: `translate(${n.x},${n.y})` });
      group.append(svg("title", {}, n.id), svg("rect", { width: w, height: h, rx: 6, class: "box " + String(n.kind).replace(/[^a-z]/g, "") }),
        svg("text", { x: 8, y: 16, class: "name" }, n.name), svg("text", { x: 8, y: 32 }, n.detail.slice(0, 30)));
      if (n.calls) group.append(svg("text", { x: 8, y: 49, class: "stats" }, n.calls + " calls · " + timing(n.mean_latency_s, n.mean_queue_s)));
      root.append(group);
    }
    return root;
  }
  function graphPage(run) {
    return el("div", { id: "graph-page" }, el("h1", {}, "Graph ", el("span", { class: "muted" }, run.scenario)),
      run.graphs.length ? null : el("p", { class: "muted" }, "no graph in the saved config"),
      run.graphs.map((g) => [el("h2", {}, g.name),
        g.error ? el("p", { class: "error" }, g.error)
          : g.calls ? table(["step", { label: "calls", num: 1 }, { label: "mean service", num: 1 }, { label: "mean queue wait", num: 1 }],
            Object.entries(g.calls).map(([k, v]) => el("tr", {}, el("td", {}, k), cell(v.calls, 1), el("td", { class: "num" }, ms(v.mean_latency_s)),
              el("td", { class: "num" }, ms(v.mean_queue_s)))))
            : el("div", { class: "card" }, drawGraph(g))]));
  }

  // -- sweep ----------------------------------------------------------------------------------
  function sweepPage() {
    const sw = DATA.sweep, names = [...new Set(sw.rows.map((r) => r.run))];
    const first = new Map(names.map((n) => [n, sw.rows.find((r) => r.run === n)]));
    const series = [...new Set(sw.rows.map((r) => r.metric + "\u0000" + r.labels))];
    const pick = (n) => () => { state.run = Math.max(0, runs.findIndex((r) => r.name === n)); state.tab = "run"; render(); };
    return el("div", { id: "sweep-page" },
      el("h1", {}, "Sweep: " + (sw.arms || runs).length + " runs ", el("span", { class: "muted" }, sw.root)),
      (sw.pooled || []).length ? el("p", { class: "muted", id: "sweep-pooled" }, "pooled over seeds (rows, not runs): " + sw.pooled.join(", ")) : null,
      el("h2", {}, "What differs"),
      sw.varying.length ? table(["key"].concat(names), sw.varying.map((k) => el("tr", {}, el("td", {}, k), names.map((n) => cell(first.get(n)[k])))), { id: "sweep-config" })
        : el("p", { class: "muted" }, "the runs' configs are the same"),
      el("h2", {}, "Metrics (95% CI)"),
      table(["metric", "labels"].concat(names.map((n) => ({ label: n, num: 1 }))), series.map((s) => {
        const [metric, labels] = s.split("\u0000");
        return el("tr", {}, el("td", {}, metric), el("td", {}, labels), names.map((n) => {
          const r = sw.rows.find((x) => x.run === n && x.metric === metric && x.labels === labels);
          return el("td", { class: "num" }, r ? fmt3(r.value) + (r.ci_low == null ? "" : " [" + fmt3(r.ci_low) + ", " + fmt3(r.ci_high) + "]") + " n=" + fmt(r.n) : "–");
        }));
      }), { id: "sweep-metrics" }),
      sw.plot ? el("figure", {}, image(sw.plot, "report.png")) : null,
      el("h2", {}, "Runs"),
      table(["run", "status", { label: "tokens", num: 1 }, { label: "cost", num: 1 }, { label: "wall s", num: 1 }], names.filter((n) => !(sw.pooled || []).includes(n)).map((n) => {
        const r = first.get(n);
        return el("tr", { class: "clickable", onclick: pick(n) }, el("td", {}, n), el("td", {}, el("span", { class: statusClass(r.status) }, r.status)),
          cell(r.tokens, 1), el("td", { class: "num" }, "$" + (r.cost_usd || 0).toFixed(4)), cell(r.wall_s, 1));
      }), { id: "sweep-runs" }));
  }

  // -- live (schola view --serve): poll the server; render again when the run's files changed -------------
  function liveNote(text, bad) {
    let note = document.getElementById("live");
    if (!note) { note = el("span", { id: "live" }); document.querySelector("header").append(note); }
    note.className = bad ? "error" : "muted";
    note.textContent = text;
  }
  async function adopt(next) {
    const before = runs[state.run];
    const row = state.episode != null && before ? (await indexOf(state.run))[state.episode] : null;
    const uiOf = new Map(runs.map((r, i) => [r.name, ui[i]]));
    DATA = next; runs = next.runs; TABS = tabsOf(next);
    ui = runs.map((r) => uiOf.get(r.name) || freshUi());
    cache = runs.map(freshCache);
    state.run = Math.max(0, runs.findIndex((r) => before && r.name === before.name));
    if (!TABS.includes(state.tab)) state.tab = TABS[0];
    state.episode = null;
    if (!row || !runs.length) return true;
    const rows = await indexOf(state.run), i = rows.findIndex((e) => e.id === row.id);
    state.episode = i < 0 ? null : i;
    const same = (a, b) => JSON.stringify({ ...a, index: 0 }) === JSON.stringify({ ...b, index: 0 });
    return i < 0 || !same(rows[i], row);  // an open episode that did not change keeps its page (and what is unfolded)
  }
  async function poll() {
    let next = null;
    try {
      const res = await fetch("data.json?v=" + encodeURIComponent(DATA.live.version), { cache: "no-store" });
      if (res.status === 200) next = await res.json();
      else if (res.status !== 204) throw new Error((await res.json().catch(() => ({}))).error || "HTTP " + res.status);
      liveNote("live · checked " + new Date().toLocaleTimeString(), false);
    } catch (e) {
      liveNote("live · cannot read the run: " + e.message, true);
    }
    if (next && await adopt(next)) {
      const typing = document.activeElement && main.contains(document.activeElement) && /^(INPUT|SELECT)$/.test(document.activeElement.tagName);
      const y = window.scrollY, open = [...main.querySelectorAll("details[id]")].filter((d) => d.open).map((d) => d.id);
      if (!typing) {  // what the user is typing renders with the new data when it applies
        await render();
        for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
        window.scrollTo(0, y);
      }
    }
    setTimeout(poll, DATA.live.poll_ms || 1500);
  }

  window.addEventListener("hashchange", () => {  // a link pasted into this page's address bar
    const o = fromHash(location.hash);
    Object.assign(state, { tab: o.tab, want: o.want, episode: null });
    render();
  });
  render();
  if (DATA.live) { liveNote("live", false); setTimeout(poll, DATA.live.poll_ms || 1500); }
})();
