/* global document, window, fetch, EventSource, setTimeout, clearTimeout */
// The operator page (/ops): plain script, no build step, nothing loaded from elsewhere.
// It asks /ops/api/snapshot whether we may see anything (401: the login form; 403: not an
// operator), then follows /ops/api/stream, one snapshot per event. Everything from the
// server is written as text (textContent), never as HTML.
"use strict";

(function () {
  const $ = id => document.getElementById(id);
  let stream = null;
  let retryTimer = null;

  function show(view) {
    for (const id of ["login", "forbidden", "dashboard"]) $(id).hidden = id !== view;
    $("logout").hidden = view === "login";
  }

  function setStatus(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.dataset.kind = kind || "";
  }

  async function errorMessage(res) {
    try {
      const body = await res.json();
      return (body && body.error && body.error.message) || `HTTP ${res.status}`;
    } catch {
      return `HTTP ${res.status}`;
    }
  }

  function stopStream() {
    if (stream) stream.close();
    stream = null;
  }

  function retryLater(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(start, ms);
  }

  /** Decides what to show from what the snapshot endpoint answers. */
  async function start() {
    clearTimeout(retryTimer);
    let res;
    try {
      res = await fetch("/ops/api/snapshot", {
        credentials: "same-origin",
        headers: { accept: "application/json" },
      });
    } catch {
      setStatus("gateway unreachable, retrying…", "bad");
      retryLater(3000);
      return;
    }
    if (res.status === 401) {
      stopStream();
      show("login");
      setStatus("not logged in", "");
      return;
    }
    if (res.status === 403) {
      stopStream();
      show("forbidden");
      setStatus("not an operator", "bad");
      return;
    }
    if (!res.ok) {
      setStatus(`${await errorMessage(res)}, retrying…`, "bad");
      retryLater(3000);
      return;
    }
    render(await res.json());
    show("dashboard");
    openStream();
  }

  function openStream() {
    stopStream();
    const es = new EventSource("/ops/api/stream");
    stream = es;
    es.onmessage = ev => {
      render(JSON.parse(ev.data));
    };
    // The session ended (expired, or the account is no operator any more).
    es.addEventListener("denied", () => {
      stopStream();
      start();
    });
    es.onerror = () => {
      setStatus("connection lost, reconnecting…", "bad");
      // A refused (re)connection is not retried by EventSource itself: ask again.
      if (es.readyState === EventSource.CLOSED && stream === es) {
        stream = null;
        retryLater(2000);
      }
    };
  }

  // ---- rendering ----

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function fill(tbodyId, rows, columns, emptyText, decorate) {
    const tbody = $(tbodyId);
    tbody.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell(tr, emptyText);
      td.colSpan = columns;
      tbody.appendChild(tr);
      return;
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      decorate(tr, row);
      tbody.appendChild(tr);
    }
  }

  const mb = bytes => `${(bytes / 1048576).toFixed(0)} MB`;
  const pct = v => (typeof v === "number" ? `${v.toFixed(0)} %` : "–");
  const time = iso => new Date(iso).toLocaleTimeString();
  function duration(sec) {
    if (typeof sec !== "number") return "–";
    if (sec < 120) return `${sec} s`;
    if (sec < 7200) return `${Math.round(sec / 60)} min`;
    return `${(sec / 3600).toFixed(1)} h`;
  }
  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

  function render(s) {
    const up = s.nodes.filter(n => n.available).length;
    setStatus(`live · ${time(s.at)}`, "ok");
    $("node-count").textContent = `${up} available of ${s.nodes.length} known`;

    fill("nodes", s.nodes, 7, "no nodes", (tr, n) => {
      const state = !n.available ? "unavailable" : n.health === "ok" ? "available" : "unreachable";
      tr.dataset.node = n.id;
      tr.dataset.state = state;
      tr.className = state;
      cell(tr, n.local ? `${n.id} (this gateway)` : n.id);
      cell(tr, state, "state");
      cell(tr, n.services.join(", ") || "–");
      cell(tr, pct(n.cpu), "num");
      cell(tr, n.memory ? mb(n.memory.rssBytes) : "–", "num");
      cell(tr, n.memory ? pct(n.memory.hostUsedPercent) : "–", "num");
      cell(tr, duration(n.uptimeSec), "num");
    });

    fill("breakers", s.breakers, 4, "none open", (tr, b) => {
      tr.dataset.breaker = b.action;
      tr.dataset.target = b.target;
      tr.className = b.state;
      cell(tr, b.node);
      cell(tr, b.action);
      cell(tr, b.target);
      cell(tr, b.state, "state");
    });
    fill("bulkheads", s.bulkheads, 4, "no calls waiting", (tr, b) => {
      cell(tr, b.node);
      cell(tr, b.action);
      cell(tr, String(b.active), "num");
      cell(tr, String(b.queue), "num");
    });
    fill("outboxes", s.outboxes, 3, "nothing reported", (tr, o) => {
      if (o.backlog > 0) tr.className = "warn";
      cell(tr, o.node);
      cell(tr, o.service);
      cell(tr, String(o.backlog), "num");
    });
    fill("lag", s.lag, 3, "nothing reported", (tr, l) => {
      cell(tr, l.node);
      cell(tr, l.consumer);
      cell(tr, `${number.format(l.seconds)} s`, "num");
    });
    const hooks = s.webhooks ? [s.webhooks] : [];
    fill("webhooks", hooks, 5, "webhooks service not reachable", (tr, w) => {
      if (w.pending > 0 && w.oldestPendingMs > 60_000) tr.className = "warn";
      cell(tr, String(w.pending), "num");
      cell(tr, duration(Math.round(w.oldestPendingMs / 1000)), "num");
      cell(tr, String(w.failed), "num");
      cell(tr, String(w.disabledEndpoints), "num");
      cell(tr, w.disabled.map(d => `${d.id}: ${d.reason ?? ""}`).join("; "));
    });
    // Amounts are decimal strings of base units: shown as they are, never as numbers.
    const market = s.market;
    const lines = market ? market.escrow.tokens : [];
    $("escrow-summary").textContent = !market
      ? ""
      : market.escrow.agrees === true
        ? "balance = held"
        : market.escrow.agrees === false
          ? market.escrow.complete
            ? "balance differs from held (a sale under way, or money stuck)"
            : "too much to sum: partial figures"
          : "a balance is unknown";
    fill("escrow", lines, 7, market ? "nothing held" : "market service not reachable", (tr, e) => {
      tr.dataset.token = e.tokenId;
      if (e.agrees === false) tr.className = "warn";
      cell(tr, e.tokenId);
      cell(tr, e.balance ?? "–", "num");
      cell(tr, e.held, "num");
      cell(tr, e.offers, "num");
      cell(tr, e.bids, "num");
      cell(tr, e.purchases, "num");
      cell(tr, e.agrees === null ? "unknown" : e.agrees ? "yes" : "NO", "state");
    });
    const ending = market ? market.endingSoon : [];
    fill(
      "auctions",
      ending,
      4,
      market ? "no auction running" : "market service not reachable",
      (tr, a) => {
        tr.dataset.auction = a.id;
        cell(tr, a.id);
        cell(tr, a.nftId);
        cell(tr, a.highestBid ? a.highestBid.amount : "no bid", "num");
        cell(tr, new Date(a.endsAt).toLocaleString());
      },
    );
    const sagaText = s.sagas.available ? "no sagas yet" : "sagas service not reachable";
    fill("sagas", s.sagas.rows, 5, sagaText, (tr, g) => {
      tr.dataset.saga = g.id;
      tr.className = g.state;
      cell(tr, g.id);
      cell(tr, g.type);
      cell(tr, g.state, "state");
      cell(tr, time(g.updatedAt));
      const failed = g.failedSteps.map(f =>
        f.error ? `${f.name}: ${f.error.type} ${f.error.message}` : `${f.name} (${f.state})`,
      );
      cell(tr, failed.join("; ") || (g.error ? `${g.error.step}: ${g.error.type}` : ""));
    });

    drawChart(s.rates);
  }

  /** Two lines, each on its own scale (left: requests/s, right: transfers/s). */
  function drawChart(points) {
    const canvas = $("chart");
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    const pad = { l: 48, r: 48, t: 10, b: 20 };
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px sans-serif";
    ctx.strokeStyle = "#ccc";
    ctx.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
    const last = points[points.length - 1];
    $("rate-requests").textContent = last ? number.format(last.requests) : "–";
    $("rate-transfers").textContent = last ? number.format(last.transfers) : "–";
    if (points.length < 2) {
      ctx.fillStyle = "#888";
      ctx.fillText("collecting…", pad.l + 8, pad.t + 18);
      return;
    }
    const t1 = points[points.length - 1].t;
    const t0 = Math.min(points[0].t, t1 - 60_000);
    const x = t => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
    const series = [
      { key: "requests", color: "#1f6feb", axisX: 4, align: "left" },
      { key: "transfers", color: "#d97706", axisX: w - 4, align: "right" },
    ];
    for (const sr of series) {
      const max = Math.max(1, ...points.map(p => p[sr.key])) * 1.1;
      const y = v => h - pad.b - (v / max) * (h - pad.t - pad.b);
      ctx.strokeStyle = sr.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      points.forEach((p, i) =>
        i ? ctx.lineTo(x(p.t), y(p[sr.key])) : ctx.moveTo(x(p.t), y(p[sr.key])),
      );
      ctx.stroke();
      ctx.fillStyle = sr.color;
      ctx.textAlign = sr.align;
      ctx.fillText(number.format(max), sr.axisX, pad.t + 10);
      ctx.fillText("0", sr.axisX, h - pad.b);
    }
    ctx.fillStyle = "#888";
    ctx.textAlign = "left";
    ctx.fillText(`${Math.round((t1 - t0) / 60_000)} min ago`, pad.l, h - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", w - pad.r, h - 4);
  }

  // ---- login / logout ----

  $("login-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    $("login-error").textContent = "";
    const res = await fetch("/ops/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: $("email").value, password: $("password").value }),
    }).catch(() => null);
    if (!res) {
      $("login-error").textContent = "The gateway did not answer";
      return;
    }
    if (!res.ok) {
      $("login-error").textContent = await errorMessage(res);
      return;
    }
    $("password").value = "";
    start();
  });

  $("logout").addEventListener("click", async () => {
    stopStream();
    await fetch("/ops/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: "{}",
    }).catch(() => null);
    start();
  });

  window.addEventListener("pagehide", stopStream);
  start();
})();
