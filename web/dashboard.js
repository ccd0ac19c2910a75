// prewarmd dashboard: fills the app table (/) and draws one app's charts (/app/NAME) from the JSON API.
// Text from the API goes in through textContent only: app names and fallback reasons are not trusted.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  // browser_check.py looks for the first two in the screenshot; keep them in sync.
  const COLORS = {
    cold: "#d62728",
    restored: "#1f77b4",
    validate: "#2ca02c",
    read: "#ff7f0e",
    map: "#9467bd",
    resume: "#8c564b",
    duration: "#17becf",
    frozen: "#e377c2",
    image: "#7f7f7f",
  };

  // ---- small helpers -------------------------------------------------------------------------

  function el(tag, text, className) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (className) e.className = className;
    return e;
  }

  const fmt = {
    ms: (v) => (v == null ? "–" : v.toFixed(1) + " ms"),
    mib: (bytes) => (bytes == null ? "–" : (bytes / 1048576).toFixed(1) + " MiB"),
    speedup: (v) => (v == null ? "–" : v.toFixed(1) + "×"),
    percent: (v) => (v == null ? "–" : (v * 100).toFixed(0) + " %"),
    time: (ms) => new Date(ms).toLocaleString(),
  };

  function setStatus(text, isError) {
    document.getElementById("status").textContent = text;
    if (isError) document.body.dataset.rendered = "error";
  }

  // Resolves to the parsed JSON; rejects with a message that names the URL and the cause.
  async function getJson(url) {
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
    } catch (e) {
      throw new Error(`cannot reach prewarmd (${url}: ${e.message}); is it running?`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      // fall through: the status code says more than the parse error
    }
    if (!response.ok) {
      const why = body && body.error ? body.error : response.statusText;
      throw new Error(`${url}: HTTP ${response.status}: ${why}`);
    }
    if (body == null) throw new Error(`${url}: the reply is not JSON`);
    return body;
  }

  // Fetches url now and every REFRESH_MS; render() runs only when the reply changed, so a quiet
  // daemon does not make the charts flicker.
  function poll(url, render) {
    let last = null;
    const tick = async () => {
      try {
        const data = await getJson(url);
        const text = JSON.stringify(data);
        if (text !== last) {
          await render(data);
          last = text;
        }
        setStatus("");
        recordPlotRects();
        document.body.dataset.rendered = "1";
      } catch (e) {
        setStatus(`Cannot show the dashboard: ${e.message}. Retrying every ${REFRESH_MS / 1000} s.`, true);
      }
    };
    tick();
    setInterval(tick, REFRESH_MS);
  }

  // ---- page: index ---------------------------------------------------------------------------

  function appRow(app) {
    const tr = el("tr");
    const name = el("td");
    const link = el("a", app.name);
    link.href = "/app/" + encodeURIComponent(app.name);
    name.append(link);
    const state = el("td", app.state, "state-" + app.state);
    if (app.reason) state.title = app.reason;
    const fallbacks = app.last_fallbacks || [];
    const reason = el("td", fallbacks.length ? fallbacks[fallbacks.length - 1] : "", "reason");
    if (fallbacks.length > 1) reason.title = fallbacks.join("\n");
    tr.append(
      name,
      state,
      el("td", String(app.launches.cold), "num"),
      el("td", String(app.launches.restored), "num"),
      el("td", fmt.ms(app.cold_ready_ms.p50), "num"),
      el("td", fmt.ms(app.restored_ready_ms.p50), "num"),
      el("td", fmt.speedup(app.speedup), "num"),
      el("td", fmt.percent(app.hit_rate), "num"),
      el("td", fmt.mib(app.image_bytes), "num"),
      reason,
    );
    return tr;
  }

  function renderIndex(data) {
    const tbody = document.querySelector("#apps tbody");
    if (data.apps.length === 0) {
      const td = el("td", "No apps registered yet.", "empty");
      td.colSpan = 10;
      const tr = el("tr");
      tr.append(td);
      tbody.replaceChildren(tr);
      return;
    }
    tbody.replaceChildren(...data.apps.map(appRow));
  }

  // ---- page: app -----------------------------------------------------------------------------

  function summaryText(app) {
    const parts = [
      `state ${app.state}${app.reason ? " (" + app.reason + ")" : ""}`,
      `${app.launches.cold} cold, ${app.launches.restored} restored, ${app.launches.fallbacks} fallbacks`,
      `ready p50/p95: cold ${fmt.ms(app.cold_ready_ms.p50)} / ${fmt.ms(app.cold_ready_ms.p95)}, ` +
        `restored ${fmt.ms(app.restored_ready_ms.p50)} / ${fmt.ms(app.restored_ready_ms.p95)}`,
      `speedup ${fmt.speedup(app.speedup)}`,
      `hit rate ${fmt.percent(app.hit_rate)}`,
      `image ${fmt.mib(app.image_bytes)}`,
    ];
    return parts.join(" · ");
  }

  // Number of points uPlot was given for each named series (nulls are gaps, not points).
  function countPoints(data, names) {
    const counts = {};
    names.forEach((name, i) => {
      counts[name] = data[i + 1].filter((v) => v != null).length;
    });
    return counts;
  }

  function markChart(container, counts) {
    for (const [name, n] of Object.entries(counts)) {
      container.dataset["points" + name[0].toUpperCase() + name.slice(1)] = String(n); // data-points-NAME
    }
  }

  const charts = [];

  // Where each plotting area is on the page, so a screenshot check can look only there. Taken
  // once the layout is final: clearing the status line moves the charts up.
  function recordPlotRects() {
    for (const u of charts) {
      if (!u.root.isConnected) continue;
      const r = u.over.getBoundingClientRect();
      const rect = [r.left + scrollX, r.top + scrollY, r.width, r.height];
      u.root.parentElement.dataset.plotRect = rect.map(Math.round).join(",");
    }
  }

  // Draws one chart into container and resolves once uPlot has drawn it (uPlot draws
  // asynchronously); then records what was plotted, for browser_check.py.
  function drawChart(container, opts, data, names, emptyText) {
    const counts = countPoints(data, names);
    if (data[0].length === 0) {
      container.replaceChildren(el("p", emptyText, "empty"));
      markChart(container, counts);
      return Promise.resolve();
    }
    container.replaceChildren();
    return new Promise((resolve) => {
      opts.width = Math.max(300, container.clientWidth);
      opts.height = 300;
      opts.hooks = {
        draw: [
          (u) => {
            markChart(container, counts);
            resolve();
          },
        ],
      };
      charts.push(new uPlot(opts, data, container));
    });
  }

  // Room either side of the first and last time, so edge points are not cut in half. Taken from the
  // data: for a single point uPlot passes a 1000-day span (it assumes ms timestamps there).
  const paddedTime = {
    range: (u) => {
      const [min, max] = [u.data[0][0], u.data[0][u.data[0].length - 1]];
      const pad = Math.max((max - min) * 0.03, 30);
      return [min - pad, max + pad];
    },
  };

  function pointSeries(label, color) {
    return {
      label,
      stroke: color,
      fill: color,
      paths: () => null, // points only: launches are separate events, a line between them means nothing
      points: { show: true, size: 8, fill: color, stroke: color },
      value: (u, v) => fmt.ms(v),
    };
  }

  function readyChart(launches) {
    const x = launches.map((l) => l.time_ms / 1000);
    const ready = (mode) => launches.map((l) => (l.mode === mode ? l.ready_ms : null));
    const data = [x, ready("cold"), ready("restored")];
    // Cold and restored differ by an order of magnitude, so a log axis keeps both readable.
    const positive = launches.every((l) => l.ready_ms == null || l.ready_ms > 0);
    return drawChart(
      document.getElementById("chart-ready"),
      {
        scales: { x: paddedTime, y: positive ? { distr: 3, log: 10 } : {} },
        series: [{}, pointSeries("cold", COLORS.cold), pointSeries("restored", COLORS.restored)],
        axes: [{}, { label: "ms to ready", size: 60 }],
      },
      data,
      ["cold", "restored"],
      "No launches yet.",
    );
  }

  function phasesChart(launches) {
    const restored = launches.filter((l) => l.mode === "restored");
    const phases = ["validate", "read", "map", "resume"];
    const raw = phases.map((p) => restored.map((l) => (l.phases ? l.phases[p + "_ms"] : null)));
    // Each bar goes from 0 to the running total and later bars are drawn over earlier ones, so the
    // series are the totals from the top of the stack down. The legend shows each phase's own ms.
    const totals = raw.map((_, i) =>
      restored.map((_, j) => (raw[0][j] == null ? null : raw.slice(0, i + 1).reduce((sum, r) => sum + r[j], 0))),
    );
    const order = [3, 2, 1, 0];
    const data = [restored.map((_, j) => j), ...order.map((i) => totals[i])];
    const bars = uPlot.paths.bars({ size: [0.6, 60] });
    return drawChart(
      document.getElementById("chart-phases"),
      {
        scales: { x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] } },
        series: [
          {
            label: "launch",
            value: (u, v) => (v == null ? "–" : `#${restored[v].id} ${fmt.time(restored[v].time_ms)}`),
          },
          ...order.map((i) => ({
            label: phases[i],
            stroke: COLORS[phases[i]],
            fill: COLORS[phases[i]],
            paths: bars,
            points: { show: false },
            value: (u, v, si, idx) => (idx == null ? "–" : fmt.ms(raw[i][idx])),
          })),
        ],
        axes: [
          {
            label: "restored launch",
            values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) && restored[t] ? "#" + restored[t].id : "")),
          },
          { label: "ms", size: 60 },
        ],
      },
      data,
      order.map((i) => phases[i]),
      "No restored launches yet.",
    );
  }

  function snapshotsChart(snapshots) {
    const x = snapshots.map((s) => s.time_ms / 1000);
    const line = (label, color, scale, value) => ({
      label,
      stroke: color,
      width: 2,
      scale,
      points: { show: true, size: 7, fill: color, stroke: color },
      value: (u, v) => value(v),
    });
    return drawChart(
      document.getElementById("chart-snapshots"),
      {
        scales: { x: paddedTime, mib: {} },
        series: [
          {},
          line("duration", COLORS.duration, "y", fmt.ms),
          line("frozen", COLORS.frozen, "y", fmt.ms),
          line("image", COLORS.image, "mib", (v) => (v == null ? "–" : v.toFixed(1) + " MiB")),
        ],
        axes: [{}, { label: "ms", size: 60 }, { scale: "mib", side: 1, label: "MiB", size: 60, grid: { show: false } }],
      },
      [
        x,
        snapshots.map((s) => s.duration_ms),
        snapshots.map((s) => s.frozen_ms),
        snapshots.map((s) => (s.image_bytes == null ? null : s.image_bytes / 1048576)),
      ],
      ["duration", "frozen", "image"],
      "No snapshots yet.",
    );
  }

  function fallbackList(launches, snapshots) {
    const items = [
      ...launches
        .filter((l) => l.fallback)
        .map((l) => ({ time_ms: l.time_ms, text: `launch #${l.id}: ${l.fallback}` })),
      ...snapshots
        .filter((s) => s.error)
        .map((s) => ({ time_ms: s.time_ms, text: `snapshot #${s.id} failed: ${s.error}` })),
    ].sort((a, b) => b.time_ms - a.time_ms);
    const ul = document.getElementById("fallbacks");
    if (items.length === 0) {
      ul.replaceChildren(el("li", "None.", "empty"));
      return;
    }
    ul.replaceChildren(...items.slice(0, 20).map((i) => el("li", `${fmt.time(i.time_ms)}  ${i.text}`)));
  }

  async function renderApp(data) {
    for (const chart of charts.splice(0)) chart.destroy();
    document.getElementById("summary").textContent = summaryText(data.app);
    fallbackList(data.launches, data.snapshots);
    await Promise.all([readyChart(data.launches), phasesChart(data.launches), snapshotsChart(data.snapshots)]);
  }

  // ---- start ---------------------------------------------------------------------------------

  // Charts are drawn at their container's width; follow the window.
  addEventListener("resize", () => {
    for (const chart of charts) chart.setSize({ width: Math.max(300, chart.root.parentElement.clientWidth), height: 300 });
  });

  if (document.body.dataset.page === "index") {
    poll("/api/apps", renderIndex);
  } else {
    let name;
    try {
      name = decodeURIComponent(location.pathname.replace(/^\/app\//, "").replace(/\/$/, ""));
    } catch (e) {
      setStatus(`Cannot read the app name from ${location.pathname}: ${e.message}.`, true);
      return;
    }
    document.getElementById("app-name").textContent = name;
    document.title = name + " · prewarm";
    poll("/api/apps/" + encodeURIComponent(name), renderApp);
  }
})();
