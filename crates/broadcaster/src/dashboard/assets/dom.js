// DOM helpers shared by the pages: element building, toasts, empty states, formatting.

/** Builds an element: `on…` keys become listeners, `true`/`false` toggle boolean attributes. */
export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "value") e.value = v;
    else if (k === "checked") e.checked = Boolean(v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  append(e, kids);
  return e;
}

function append(e, kids) {
  for (const k of kids) {
    if (k === null || k === undefined || k === false || k === "") continue;
    if (Array.isArray(k)) append(e, k);
    else e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** Replaces a node's children; like `el`, it skips absent ones (replaceChildren would print "null"). */
export function put(node, ...kids) {
  node.replaceChildren();
  append(node, kids);
}

let toastTimer = null;
/** A short notice in the polite live region (screen readers announce it). */
export function toast(message, bad = false) {
  const t = $("#toast");
  t.textContent = message;
  t.classList.toggle("bad", bad);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}

/** Runs an async handler, reporting its failure as a toast instead of an unhandled rejection. */
export function guard(fn) {
  return async (...args) => {
    try { return await fn(...args); } catch (e) { toast(e.message, true); return undefined; }
  };
}

/** A page's "nothing here yet" panel: what the page is for and the first thing to do. */
export function emptyState(title, text, ...actions) {
  return el("div", { class: "empty", "data-empty": "" },
    el("h3", {}, title), el("p", {}, text), actions.length ? el("div", { class: "row center" }, ...actions) : null);
}

export function button(label, onclick, cls = "", attrs = {}) {
  return el("button", { type: "button", class: ("btn " + cls).trim(), onclick: guard(onclick), ...attrs }, label);
}

/** A labelled form control (the label is visible, so axe and people both know what it is). */
export function field(label, control, hint) {
  return el("label", { class: "field" }, el("span", {}, label), control, hint ? el("small", { class: "muted" }, hint) : null);
}

/** A progress bar; `usage` bars (of a limit) turn amber from 80% and red when used up. */
export function bar(percent, label, usage = false) {
  const p = Math.max(0, Math.min(100, Number(percent) || 0));
  const fill = el("div", { class: "fill" + (usage && p >= 100 ? " bad" : usage && p >= 80 ? " warn" : "") });
  fill.style.width = p + "%";
  return el("div", { class: "bar", role: "progressbar", "aria-valuenow": String(Math.round(p)), "aria-valuemin": "0", "aria-valuemax": "100", "aria-label": label }, fill);
}

export const splitList = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
export const time = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
export const dateTime = (ms) => (ms ? new Date(ms).toLocaleString() : "");
export function ago(ms) {
  if (!ms) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return new Date(ms).toLocaleDateString();
}
export function size(n) {
  if (n === null || n === undefined) return "";
  return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KB" : (n / 1048576).toFixed(1) + " MB";
}
/** A JID or phone as people read it: +digits for phone-number JIDs. */
export function phoneOf(jid) {
  if (!jid) return "";
  const m = /^(\d+)(?::\d+)?@s\.whatsapp\.net$/.exec(jid);
  return m ? "+" + m[1] : jid;
}

/** Coalesces bursts (live events) into one call. */
export function debounced(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(() => { Promise.resolve(fn()).catch((e) => toast(e.message, true)); }, ms); };
}

export function base64Of(buf) {
  const bytes = new Uint8Array(buf);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** Asks a yes/no question in a modal dialog (keyboard: Enter confirms, Escape cancels). */
export function confirmDialog(question, yes = "Delete") {
  return new Promise((resolve) => {
    const d = el("dialog", { class: "card", "aria-label": question },
      el("p", {}, question),
      el("form", { method: "dialog", class: "row end" },
        el("button", { class: "btn", value: "no" }, "Cancel"),
        el("button", { class: "btn danger", value: "yes", "data-confirm": "" }, yes)));
    d.addEventListener("close", () => { resolve(d.returnValue === "yes"); d.remove(); });
    document.body.append(d);
    d.showModal();
  });
}
