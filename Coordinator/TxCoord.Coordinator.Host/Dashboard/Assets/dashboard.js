// TxCoord coordinator dashboard. Plain JavaScript, no build step; uses only the JSON API.
// Everything from the server is put on the page as text (textContent), never as HTML.
(() => {
  "use strict";

  const KEY_STORAGE = "txcoord.apiKey";
  const OPERATOR_STORAGE = "txcoord.operator";
  const LIVE_STATUSES = ["in-doubt", "stuck", "preparing", "committing", "deciding", "precommitting", "forcingprecommit"];
  const JOURNAL_STATES = ["committing", "committed", "aborted", "precommitting"];
  const PAGE_SIZE = 50;

  const state = {
    view: "live",
    offset: 0,
    cursors: [],        // journal: cursor of each page shown so far (null for the first)
    nextCursor: null,
    nextOffset: null,
    refreshSeconds: 3,
    paused: false,
    busy: false,
    again: false,
    detailId: null,
    overview: null,
    adminForm: null,    // which admin form is open in the detail dialog
    adminShape: null,   // what the admin box was drawn for (re-drawn only when it changes)
    adminResult: null,  // { id, node }: the answer to the last admin action, kept across refreshes
  };

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function replace(node, ...children) { node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined)); }

  // ---- formatting ------------------------------------------------------------------------

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 10) return seconds.toFixed(1) + " s";
    if (seconds < 60) return Math.round(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " m " + Math.round(seconds % 60) + " s";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " m";
    return Math.floor(seconds / 86400) + " d " + Math.floor((seconds % 86400) / 3600) + " h";
  }
  const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(1) + " ms" : Math.round(v) + " ms");
  const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
  const rate = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0));
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString("en-GB") : "–");
  const dateTime = (iso) => (iso ? new Date(iso).toLocaleString("en-GB") : "–");
  const shortId = (id) => (id && id.length > 13 ? id.slice(0, 8) + "…" + id.slice(-4) : id);

  // ---- API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = "Bearer " + key;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
    });
    let body = null;
    const text = await response.text();
    if (text) {
      try { body = JSON.parse(text); } catch { body = { error: text }; }
    }
    if (!response.ok && !(options.acceptStatuses || []).includes(response.status)) {
      throw new ApiError(response.status, (body && body.error) || response.status + " " + response.statusText);
    }
    return { status: response.status, body };
  }

  // ---- refresh loop -------------------------------------------------------------------------

  async function refresh() {
    if (state.busy) {
      state.again = true; // a filter or tab changed meanwhile: refresh once more when this one ends
      return;
    }
    state.busy = true;
    try {
      const [overview, list, participants, audit] = await Promise.allSettled([
        api("/api/overview"),
        api(listPath()),
        api("/api/participants"),
        api("/api/audit?limit=15"),
      ]);
      const failures = [overview, list, participants, audit].filter((r) => r.status === "rejected").map((r) => r.reason);
      if (overview.status === "fulfilled") renderOverview(overview.value.body);
      if (list.status === "fulfilled") { renderList(list.value.body); $("filter-error").textContent = ""; }
      else if (list.reason.status === 400) $("filter-error").textContent = list.reason.message;
      if (participants.status === "fulfilled") renderParticipants(participants.value.body);
      if (audit.status === "fulfilled") renderAudit(audit.value.body);
      renderProblems(failures);
      if (state.detailId && $("detail").open) await loadDetail(state.detailId, false);
      $("updated").textContent = new Date().toLocaleTimeString("en-GB");
    } finally {
      state.busy = false;
      if (state.again) {
        state.again = false;
        refresh().catch((e) => renderProblems([e]));
      }
    }
  }

  function schedule() {
    setTimeout(async () => {
      if (!state.paused && document.visibilityState !== "hidden") {
        try { await refresh(); } catch (e) { renderProblems([e]); }
      }
      schedule();
    }, state.refreshSeconds * 1000);
  }

  // ---- overview -----------------------------------------------------------------------------

  function renderOverview(o) {
    state.overview = o;
    state.refreshSeconds = o.coordinator.refreshSeconds || 3;
    const c = o.coordinator, t = o.totals;
    $("coordinator-id").textContent = c.id;
    $("version").textContent = c.version;
    $("uptime").textContent = age(c.uptimeSeconds);
    document.title = "TxCoord " + c.id + (t.inDoubt + t.stuck > 0 ? " – " + (t.inDoubt + t.stuck) + " need attention" : "");

    pill($("bus-pill"), "bus " + c.bus.status.toLowerCase(), c.bus.status === "Healthy" ? "ok" : c.bus.status === "Degraded" ? "warn" : "bad", c.bus.description);
    pill($("journal-pill"), c.journal.reachable ? "journal " + ms(c.journal.pingMs) : "journal unreachable", c.journal.reachable ? "ok" : "bad", c.journal.error || "");
    const rights = c.admin.rights;
    pill($("admin-pill"), !c.admin.enabled ? "admin off" : rights === "admin" ? "admin: key ok" : "admin: key needed",
      !c.admin.enabled ? "" : rights === "admin" ? "ok" : "warn", c.admin.message || "");

    $("c-in-flight").textContent = num(t.inFlight);
    $("c-in-flight-sub").textContent = rate(t.begunPerSecond) + " begun/s";
    $("c-in-doubt").textContent = num(t.inDoubt);
    $("c-in-doubt-sub").textContent = t.inDoubtNotInMemory > 0 ? t.inDoubtNotInMemory + " prepared, not held here" : "past " + c.thresholds.inDoubtAfterSeconds + " s";
    $("c-stuck").textContent = num(t.stuck);
    $("c-stuck-sub").textContent = "phase 2 > " + c.thresholds.stuckAfterSeconds + " s";
    $("c-committed").textContent = num(t.committed);
    $("c-committed-sub").textContent = rate(t.committedPerSecond) + "/s (1 min)";
    $("c-aborted").textContent = num(t.aborted);
    $("c-aborted-sub").textContent = rate(t.abortedPerSecond) + "/s (1 min)";
    $("c-latency").textContent = ms(t.p50Ms);
    $("c-latency-sub").textContent = "p99 " + ms(t.p99Ms);
    document.querySelector("[data-testid=card-in-doubt]").classList.toggle("hot", t.inDoubt > 0);
    document.querySelector("[data-testid=card-stuck]").classList.toggle("hot", t.stuck > 0);

    replace($("protocols-body"), o.protocols.map((p) => el("tr", { "data-protocol": p.protocol },
      el("td", { text: p.protocol.toUpperCase() }),
      el("td", { class: "num", text: num(p.begun) }),
      el("td", { class: "num", text: num(p.committed) }),
      el("td", { class: "num", text: num(p.aborted) }),
      el("td", { class: "num", text: num(p.recovered) }),
      el("td", { class: "num", text: num(p.inFlight) }),
      el("td", { class: "num", text: num(p.inDoubt) }),
      el("td", { class: "num", text: num(p.stuck) }),
      el("td", { class: "num", text: num(p.redrives) }),
      el("td", { class: "num", text: num(p.messagesRetried) }),
      el("td", { text: Object.entries(p.journal).map(([k, v]) => k + " " + num(v)).join(", ") || "none" }))));

    drawThroughput(o.series);
    drawLatency(o.series);

    const facts = [
      ["Coordinator id", c.id], ["Version", c.version], ["Started", dateTime(c.startedAt)], ["Uptime", age(c.uptimeSeconds)],
      ["Bus", c.bus.status + (c.bus.description ? " – " + c.bus.description : "")],
      ["Journal", c.journal.reachable ? "reachable, ping " + ms(c.journal.pingMs) : "UNREACHABLE: " + c.journal.error],
      ["Journal lag (decision writes, 1 min)", "p50 " + ms(c.journal.decisionWriteP50Ms) + ", p99 " + ms(c.journal.decisionWriteP99Ms)],
      ["Last decision written", c.journal.lastDecisionWriteAgoSeconds === null ? "none yet" : age(c.journal.lastDecisionWriteAgoSeconds) + " ago"],
      ["Decision-write failures", num(c.journal.decisionWriteFailures)],
      ["Journal rows", num(o.journal.total) + (o.journal.error ? " (count failed: " + o.journal.error + ")" : " – " + Object.entries(o.journal.byState).map(([k, v]) => k + " " + num(v)).join(", ") + " (counted " + time(o.journal.countedAt) + ")")],
      ["Admin actions", c.admin.enabled ? "on (your rights: " + rights + ")" : "off – " + c.admin.message],
      ["Attention thresholds", "in doubt after " + c.thresholds.inDoubtAfterSeconds + " s; stuck after " + c.thresholds.stuckAfterSeconds + " s or " + c.thresholds.stuckAfterRedrives + " re-drives"],
    ];
    replace($("coordinator-facts"), facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  }

  function pill(node, text, cls, title) {
    node.textContent = text;
    node.className = "pill " + (cls || "");
    node.title = title || "";
  }

  function renderProblems(failures) {
    const o = state.overview;
    const alerts = [];
    const unauthorized = failures.find((f) => f && f.status === 401);
    if (unauthorized) alerts.push(["bad", "This dashboard needs an API key from where you are: " + unauthorized.message + ". Use the \"API key\" button."]);
    const other = failures.filter((f) => f && f.status !== 401 && f.status !== 400);
    if (other.length) alerts.push(["bad", "Could not refresh: " + other.map((f) => f.message).join("; ")]);
    if (o && !unauthorized) {
      if (o.totals.stuck > 0) alerts.push(["bad", o.totals.stuck + " transaction(s) stuck: decided commit, phase 2 not acknowledged. Filter on status 'stuck', open one, and retry phase 2 once the participant is back."]);
      if (o.totals.inDoubt > 0) alerts.push(["warn", o.totals.inDoubt + " transaction(s) in doubt: participants hold prepared branches (and their locks) without a durable decision. Filter on status 'in-doubt'."]);
      if (!o.coordinator.journal.reachable) alerts.push(["bad", "The journal database is unreachable: no commit can be decided. " + (o.coordinator.journal.error || "")]);
      if (o.coordinator.bus.status !== "Healthy") alerts.push(["bad", "The message bus is " + o.coordinator.bus.status.toLowerCase() + ": " + (o.coordinator.bus.description || "")]);
      if (!o.coordinator.admin.enabled) alerts.push(["info", "Admin actions are off on this coordinator (" + o.coordinator.admin.message + "). The page is read-only."]);
    }
    replace($("alerts"), alerts.map(([cls, text]) => el("div", { class: "alert " + cls, role: cls === "bad" ? "alert" : null, text })));
  }

  // ---- charts ------------------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function chartFrame(container, maxY, series, labelY) {
    const W = 600, H = 170, L = 44, R = 8, T = 8, B = 20;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
    const plotW = W - L - R, plotH = H - T - B;
    for (let i = 0; i <= 4; i++) {
      const y = T + plotH - (plotH * i) / 4;
      root.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: i === 0 ? "axis" : "grid" }));
      const label = svg("text", { x: L - 4, y: y + 3, "text-anchor": "end" });
      label.textContent = labelY((maxY * i) / 4);
      root.append(label);
    }
    const n = series.length;
    [0, Math.floor(n / 2), n - 1].forEach((i) => {
      if (i < 0 || !series[i]) return;
      const x = L + (plotW * (i + 0.5)) / n;
      const label = svg("text", { x, y: H - 5, "text-anchor": "middle" });
      label.textContent = time(series[i].at);
      root.append(label);
    });
    replace(container, root);
    return { root, x: (i) => L + (plotW * (i + 0.5)) / n, y: (v) => T + plotH - (plotH * Math.min(v, maxY)) / (maxY || 1), barW: Math.max(1, plotW / n - 2), base: T + plotH };
  }

  function niceMax(value) {
    if (!value || value <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= value) return m * p;
    return 10 * p;
  }

  function drawThroughput(series) {
    const maxY = niceMax(Math.max(...series.map((p) => p.committed + p.aborted), 0));
    const f = chartFrame($("chart-throughput"), maxY, series, (v) => (v >= 1000 ? (v / 1000).toFixed(1) + "k" : Math.round(v)));
    series.forEach((p, i) => {
      const x = f.x(i) - f.barW / 2;
      const yc = f.y(p.committed);
      const ya = f.y(p.committed + p.aborted);
      if (p.committed > 0) f.root.append(svg("rect", { x, y: yc, width: f.barW, height: f.base - yc, fill: "#2e9d57" }));
      if (p.aborted > 0) f.root.append(svg("rect", { x, y: ya, width: f.barW, height: yc - ya, fill: "#d9822b" }));
    });
  }

  function drawLatency(series) {
    const maxY = niceMax(Math.max(...series.map((p) => p.p99Ms || 0), 0));
    const f = chartFrame($("chart-latency"), maxY, series, (v) => (v >= 1000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms"));
    for (const [field, color] of [["p99Ms", "#9b51e0"], ["p50Ms", "#1f5fbf"]]) {
      let d = "";
      series.forEach((p, i) => {
        if (p[field] === null || p[field] === undefined) return;
        d += (d === "" || series[i - 1]?.[field] == null ? "M" : "L") + f.x(i).toFixed(1) + " " + f.y(p[field]).toFixed(1) + " ";
      });
      if (d) f.root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    }
  }

  // ---- transactions ------------------------------------------------------------------------

  function listPath() {
    const params = new URLSearchParams();
    params.set("view", state.view);
    const status = $("f-status").value;
    if (status) params.set(state.view === "live" ? "status" : "state", status);
    const protocol = $("f-protocol").value;
    if (protocol) params.set("protocol", protocol);
    const participant = $("f-participant").value.trim();
    if (participant) params.set("participant", participant);
    params.set("limit", String(PAGE_SIZE));
    if (state.view === "live" && state.offset > 0) params.set("offset", String(state.offset));
    const cursor = state.cursors[state.cursors.length - 1];
    if (state.view === "journal" && cursor) params.set("cursor", cursor);
    return "/api/transactions?" + params.toString();
  }

  function fillStatusOptions() {
    const values = state.view === "live" ? LIVE_STATUSES : JOURNAL_STATES;
    replace($("f-status"), el("option", { value: "", text: "any" }), values.map((v) => el("option", { value: v, text: v })));
  }

  function branchBadges(participants) {
    return participants.map((b) => {
      const vote = b.vote ? el("span", { class: b.vote === "no" ? "v-no" : "v-yes", text: b.vote }) : el("span", { class: "v-none", text: "no vote" });
      const ack = b.acknowledged === true ? " / acked" : b.acknowledged === false ? " / waiting ack" : "";
      const prepared = b.prepared === true ? " · prepared" : "";
      return el("span", { class: "branch", title: b.participant }, b.participant + " ", vote, ack + prepared);
    });
  }

  function renderList(list) {
    if (list.view !== state.view) return; // answered for the tab shown before a switch
    const rows = list.items.map((t) => el("tr", {
        class: "clickable", "data-testid": "tx-row", "data-id": t.id, "data-status": t.status,
        onclick: () => openDetail(t.id),
      },
      el("td", { class: "id", title: t.id, text: shortId(t.id) }),
      el("td", { text: t.protocol.toUpperCase() }),
      el("td", {}, el("span", { class: "status " + t.status, text: t.status })),
      el("td", { class: "num", text: age(t.ageSeconds) }),
      el("td", {}, branchBadges(t.participants)),
      el("td", { class: "wrap", text: t.reason || (t.source === "participant-database" ? "prepared branch, coordinator does not hold it" : t.redrives > 0 ? t.redrives + " re-drives" : "") })));
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 6, class: "empty", text: state.view === "live" ? "Nothing in flight matches." : "No journal rows match." })));
    }
    replace($("transactions-body"), rows);

    if (list.view === "live") {
      state.nextOffset = list.nextOffset;
      $("page-info").textContent = list.total === 0 ? "0 in flight" : `${list.offset + 1}–${list.offset + list.items.length} of ${num(list.total)} in flight`;
      $("page-prev").disabled = list.offset === 0;
      $("page-first").disabled = list.offset === 0;
      $("page-next").disabled = list.nextOffset === null;
    } else {
      state.nextCursor = list.nextCursor;
      const page = state.cursors.length;
      const first = page * PAGE_SIZE;
      $("page-info").textContent = list.items.length === 0 ? "no rows" :
        `${num(first + 1)}–${num(first + list.items.length)} of ${num(list.matching)}${list.matchingCapped ? "+" : ""} journal rows (newest first)`;
      $("page-prev").disabled = page === 0;
      $("page-first").disabled = page === 0;
      $("page-next").disabled = !list.nextCursor;
    }
  }

  function resetPaging() { state.offset = 0; state.cursors = []; }

  function setView(view) {
    state.view = view;
    for (const tab of document.querySelectorAll(".tabs button")) tab.setAttribute("aria-selected", String(tab.dataset.view === view));
    fillStatusOptions();
    resetPaging();
    refresh();
  }

  // ---- participants and audit ------------------------------------------------------------------

  function renderParticipants(model) {
    const rows = model.items.map((p) => {
      const d = p.database;
      const dbCells = !d.configured
        ? [el("td", { colspan: 7, class: "muted", text: "not configured (TxCoord:Participants:" + p.id + ":ConnectionString)" })]
        : !d.reachable
          ? [el("td", { colspan: 7 }, el("span", { class: "status failed", text: "unreachable" }), " " + (d.error || ""))]
          : [
            el("td", { text: d.database }),
            el("td", { class: "num", text: num(d.preparedOurs) + " / " + num(d.preparedHere) }),
            el("td", { class: "num", text: d.oldestPreparedAgeSeconds === null ? "–" : age(d.oldestPreparedAgeSeconds) }),
            el("td", { class: "num", text: num(d.locksHeld) }),
            el("td", { class: "num", text: num(d.blockedSessions) }),
            el("td", { class: "num", title: num(d.preparedServerWide) + " of max_prepared_transactions " + num(d.maxPreparedTransactions) + " used on the server", text: num(d.headroom) + " / " + num(d.maxPreparedTransactions) }),
            el("td", { class: "num", title: "age(datfrozenxid) " + num(d.databaseFrozenXidAge), text: d.oldestXidAge === null ? "–" : num(d.oldestXidAge) + " xids" }),
          ];
      return el("tr", { "data-testid": "participant-row", "data-participant": p.id },
        el("td", { text: p.id }),
        el("td", { title: p.lastSeen || "", text: p.lastSeen ? age(p.lastSeenAgoSeconds) + " ago" : "not since start" }),
        el("td", { class: "num", text: num(p.inFlight) }),
        el("td", { class: "num", text: num(p.awaitingVote) }),
        el("td", { class: "num", text: num(p.awaitingAck) }),
        dbCells);
    });
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 12, class: "empty", text: "No participant seen or configured yet." })));
    replace($("participants-body"), rows);
  }

  function auditRows(items, compact) {
    return items.map((a) => el("tr", { "data-testid": "audit-row", "data-action": a.action },
      el("td", { text: "#" + a.id }),
      el("td", { title: a.at, text: dateTime(a.at) }),
      el("td", { title: a.credential + (a.remoteAddress ? " from " + a.remoteAddress : ""), text: a.actor }),
      el("td", { text: a.action }),
      compact ? null : el("td", { class: "id", title: a.transactionId || "" }, a.transactionId ? el("a", { href: "#", onclick: (e) => { e.preventDefault(); openDetail(a.transactionId); }, text: shortId(a.transactionId) }) : "–"),
      el("td", {}, el("span", { class: "status " + a.outcome, text: a.outcome })),
      el("td", { class: "wrap", text: a.reason + (a.result ? " → " + a.result : "") })));
  }

  function renderAudit(model) {
    const rows = auditRows(model.items, false);
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No admin action yet." })));
    replace($("audit-body"), rows);
  }

  // ---- detail and admin actions --------------------------------------------------------------

  async function openDetail(id) {
    state.detailId = id;
    state.adminForm = null;
    state.adminShape = null;
    $("d-id").textContent = id;
    replace($("d-body"), el("p", { class: "muted", text: "Loading…" }));
    replace($("d-admin"));
    if (!$("detail").open) $("detail").showModal();
    await loadDetail(id, true);
  }

  async function loadDetail(id, rebuildAdmin) {
    let detail;
    try {
      detail = (await api("/api/transactions/" + encodeURIComponent(id))).body;
    } catch (e) {
      replace($("d-body"), el("p", { class: "alert bad", text: e.message }));
      replace($("d-admin"));
      return;
    }
    if (state.detailId !== id) return;
    renderDetail(detail);
    if (rebuildAdmin || !state.adminForm) renderAdmin(detail);
  }

  /** What the admin box depends on; it is re-drawn only when this changes (or on request). */
  function adminShape(d) {
    const a = state.overview ? state.overview.coordinator.admin : null;
    return [d.id, d.verdict.verdict, d.verdict.canResolve, d.verdict.canRetry, a && a.enabled, a && a.rights].join("|");
  }

  function keyValue(pairs) {
    return el("dl", { class: "facts-list" }, pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  }

  function renderDetail(d) {
    const t = d.live || d.journal;
    const parts = [];
    parts.push(el("div", { class: "verdict", "data-testid": "verdict" },
      el("strong", { text: "Journal verdict: " + d.verdict.verdict }), " – " + d.verdict.explanation));
    if (t) {
      parts.push(keyValue([
        ["Status", el("span", { class: "status " + t.status, "data-testid": "detail-status", text: t.status })],
        ["Protocol", t.protocol.toUpperCase()],
        ["Held by", d.live ? "this coordinator's memory (phase " + d.live.phase + ")" : "journal only (not in flight here)"],
        ["Coordinator", t.coordinator || "–"],
        ["Created", dateTime(t.createdAt)],
        ["Decided", dateTime(t.decidedAt)],
        ["Ended", dateTime(t.endedAt)],
        ["Age", age(t.ageSeconds)],
        ["Re-drives", String(t.redrives)],
        ["Reason", t.reason || "–"],
        ["Participants", el("span", {}, branchBadges(t.participants))],
      ]));
    }
    parts.push(el("h3", { text: "Prepared branches in participant databases" }));
    parts.push(d.preparedBranches.length === 0
      ? el("p", { class: "muted", text: "None found (only configured participant databases are searched)." })
      : el("table", { class: "data" },
        el("thead", {}, el("tr", {}, ["Participant", "GID", "Prepared", "Age", "Locks", "xmin held back"].map((h) => el("th", { text: h })))),
        el("tbody", {}, d.preparedBranches.map((b) => el("tr", {},
          el("td", { text: b.participant }), el("td", { class: "id", text: b.gid }), el("td", { text: dateTime(b.preparedAt) }),
          el("td", { text: age(b.ageSeconds) }), el("td", { class: "num", text: num(b.locks) }), el("td", { class: "num", text: num(b.xidAge) + " xids" }))))));
    parts.push(el("h3", { text: "Journal history" }));
    parts.push(d.history.length === 0
      ? el("p", { class: "muted", text: "The journal has no history for it (presumed abort: nothing was ever forced)." })
      : el("table", { class: "data", "data-testid": "history" },
        el("thead", {}, el("tr", {}, ["#", "When", "What", "Detail"].map((h) => el("th", { text: h })))),
        el("tbody", {}, d.history.map((h) => el("tr", { "data-testid": "history-row" },
          el("td", { text: String(h.id) }), el("td", { title: h.at, text: dateTime(h.at) }), el("td", { text: h.kind }), el("td", { class: "wrap", text: h.detail || "" }))))));
    if (d.audit.length > 0) {
      parts.push(el("h3", { text: "Audit records" }));
      parts.push(el("table", { class: "data" }, el("tbody", {}, auditRows(d.audit, true))));
    }
    replace($("d-body"), parts);
  }

  function renderAdmin(d) {
    const o = state.overview;
    const box = $("d-admin");
    const shape = adminShape(d);
    if (shape === state.adminShape) return;
    state.adminShape = shape;
    if (!o || !o.coordinator.admin.enabled) {
      replace(box, el("p", { class: "muted", "data-testid": "admin-off", text: "Admin actions are off on this coordinator" + (o ? ": " + o.coordinator.admin.message : "") + "." }));
      return;
    }
    if (o.coordinator.admin.rights !== "admin") {
      replace(box, el("p", {}, "Admin actions need the admin key. ", el("button", { type: "button", class: "small", "data-testid": "admin-enter-key", onclick: openKeyDialog, text: "Enter key" })));
      return;
    }
    const v = d.verdict;
    const resolveLabel = v.verdict === "commit" ? "Resolve: commit (per journal)" : v.verdict === "abort" ? "Resolve: abort (per journal)" : "Resolve (decision in progress)";
    replace(box,
      el("h3", { text: "Admin actions" }),
      el("div", { class: "buttons" },
        el("button", { type: "button", class: "primary", "data-testid": "action-resolve", disabled: !v.canResolve, onclick: () => showAdminForm(d, "resolve"), text: resolveLabel }),
        el("button", { type: "button", "data-testid": "action-retry", disabled: !v.canRetry, onclick: () => showAdminForm(d, "retry"), text: "Retry phase 2 now" }),
        el("button", { type: "button", class: "danger", "data-testid": "action-heuristic", disabled: v.verdict === "deciding", onclick: () => showAdminForm(d, "heuristic"), text: "Force a heuristic decision…" })),
      el("div", { id: "admin-form" }),
      el("div", { id: "admin-result", "data-testid": "admin-result" },
        state.adminResult && state.adminResult.id === d.id ? state.adminResult.node : null));
  }

  function showAdminForm(d, kind) {
    state.adminForm = kind;
    const fields = [
      el("label", { for: "a-operator", text: "Your name" }),
      el("input", { id: "a-operator", "data-testid": "admin-operator", value: sessionStorage.getItem(OPERATOR_STORAGE) || "", required: true, maxlength: 100 }),
      el("label", { for: "a-reason", text: "Reason (audited)" }),
      el("input", { id: "a-reason", "data-testid": "admin-reason", required: true, minlength: 3, maxlength: 1000, size: 60 }),
    ];
    if (kind === "heuristic") {
      fields.push(
        el("label", { for: "a-outcome", text: "Forced outcome" }),
        el("select", { id: "a-outcome", "data-testid": "admin-outcome" }, el("option", { value: "commit", text: "commit" }), el("option", { value: "abort", text: "abort" })),
        el("label", { for: "a-confirm", text: "Type the transaction id to confirm" }),
        el("input", { id: "a-confirm", "data-testid": "admin-confirm", size: 40, required: true }),
        el("p", { class: "alert warn span-all", text: "A heuristic decision overrides the journal (" + d.verdict.verdict + "). It can leave participants with different outcomes. Forcing an abort over a commit decision is always refused." }));
    }
    const title = kind === "resolve" ? "Resolve as the journal says: " + d.verdict.verdict : kind === "retry" ? "Retry phase 2 now" : "Heuristic decision";
    const form = el("form", { "data-testid": "admin-form", onsubmit: (e) => { e.preventDefault(); submitAdmin(d.id, kind); } },
      el("strong", { class: "span-all", text: title }),
      fields,
      el("div", { class: "buttons" },
        el("button", { type: "submit", class: kind === "heuristic" ? "danger" : "primary", "data-testid": "admin-submit", text: kind === "retry" ? "Retry now" : "Confirm" }),
        el("button", { type: "button", onclick: () => { state.adminForm = null; replace($("admin-form")); }, text: "Cancel" })));
    replace($("admin-form"), form);
    state.adminResult = null;
    replace($("admin-result"));
    $("a-operator").value ? $("a-reason").focus() : $("a-operator").focus();
  }

  async function submitAdmin(id, kind) {
    const operator = $("a-operator").value.trim();
    sessionStorage.setItem(OPERATOR_STORAGE, operator);
    const body = { operator, reason: $("a-reason").value.trim() };
    if (kind === "heuristic") {
      body.outcome = $("a-outcome").value;
      body.heuristic = true;
      body.confirm = $("a-confirm").value.trim();
    }
    const path = "/api/admin/transactions/" + encodeURIComponent(id) + (kind === "retry" ? "/retry" : "/resolve");
    const resultBox = $("admin-result");
    try {
      const response = await api(path, { method: "POST", body, acceptStatuses: [409, 500] });
      const r = response.body;
      const node = el("div", { class: "result " + r.outcome, "data-testid": "admin-outcome-" + r.outcome },
        el("strong", { text: r.action + ": " + r.outcome }), " – " + r.message + " (audit #" + r.auditId + ")");
      state.adminResult = { id, node };
      replace(resultBox, node);
      state.adminForm = null;
      replace($("admin-form"));
    } catch (e) {
      const node = el("div", { class: "result failed", "data-testid": "admin-error", text: e.message });
      state.adminResult = { id, node };
      replace(resultBox, node);
    }
    await refresh();
  }

  // ---- API key ----------------------------------------------------------------------------

  function openKeyDialog() {
    $("key-input").value = "";
    $("key-dialog").showModal();
    $("key-input").focus();
  }

  function wire() {
    fillStatusOptions();
    for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => setView(tab.dataset.view));
    for (const id of ["f-status", "f-protocol"]) $(id).addEventListener("change", () => { resetPaging(); refresh(); });
    let typing;
    $("f-participant").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => { resetPaging(); refresh(); }, 400); });
    $("page-first").addEventListener("click", () => { resetPaging(); refresh(); });
    $("page-prev").addEventListener("click", () => {
      if (state.view === "live") state.offset = Math.max(0, state.offset - PAGE_SIZE); else state.cursors.pop();
      refresh();
    });
    $("page-next").addEventListener("click", () => {
      if (state.view === "live") { if (state.nextOffset !== null) state.offset = state.nextOffset; } else if (state.nextCursor) state.cursors.push(state.nextCursor);
      refresh();
    });
    $("lookup").addEventListener("submit", (e) => { e.preventDefault(); const id = $("lookup-id").value.trim(); if (id) openDetail(id); });
    $("d-close").addEventListener("click", () => { state.detailId = null; $("detail").close(); });
    $("detail").addEventListener("close", () => { state.detailId = null; });
    $("key-button").addEventListener("click", openKeyDialog);
    $("key-form").addEventListener("submit", () => {
      const key = $("key-input").value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      refresh().then(() => { if (state.detailId) loadDetail(state.detailId, true); });
    });
    $("key-clear").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORAGE); $("key-dialog").close(); refresh(); });
    $("key-cancel").addEventListener("click", () => $("key-dialog").close());
    $("pause-button").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause-button").textContent = state.paused ? "Resume" : "Pause";
      $("pause-button").setAttribute("aria-pressed", String(state.paused));
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wire();
    refresh().catch((e) => renderProblems([e])).finally(schedule);
  });
})();
