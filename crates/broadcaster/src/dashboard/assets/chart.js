// A small inline SVG line chart (no library): cumulative counts over time.
const NS = "http://www.w3.org/2000/svg";
const svg = (tag, attrs) => {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

/** `series`: [{ name, cls, points: [[t, value], …] }] with points sorted by time. */
export function lineChart(series, { title, total }) {
  const W = 600, H = 220, L = 40, R = 10, T = 12, B = 28;
  const all = series.flatMap((s) => s.points);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart", id: "campaign-chart" });
  const t = svg("title", {}); t.textContent = title; root.append(t);
  if (!all.length) {
    const txt = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "chart-empty" });
    txt.textContent = "Nothing sent yet"; root.append(txt);
    return root;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(t0 + 1000, ...all.map((p) => p[0]));
  const ymax = Math.max(1, total || 0, ...all.map((p) => p[1]));
  const x = (v) => L + ((v - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / ymax) * (H - T - B);
  root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }), svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (const [v, label] of [[0, "0"], [ymax, String(ymax)]]) {
    const txt = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick-label" }); txt.textContent = label; root.append(txt);
  }
  for (const [v, anchor] of [[t0, "start"], [t1, "end"]]) {
    const txt = svg("text", { x: x(v), y: H - 8, "text-anchor": anchor, class: "tick-label" });
    txt.textContent = new Date(v).toLocaleTimeString(); root.append(txt);
  }
  let legendX = L + 8;
  for (const s of series) {
    if (!s.points.length) continue;
    // A step line: the count holds until the next event.
    let d = `M${x(s.points[0][0])},${y(0)}`;
    let last = 0;
    for (const [pt, pv] of s.points) { d += ` L${x(pt)},${y(last)} L${x(pt)},${y(pv)}`; last = pv; }
    d += ` L${x(t1)},${y(last)}`;
    root.append(svg("path", { d, class: "series " + s.cls, "data-series": s.name }));
    const key = svg("text", { x: legendX, y: T + 10, class: "legend " + s.cls }); key.textContent = `${s.name} ${last}`; root.append(key);
    legendX += 110;
  }
  return root;
}
