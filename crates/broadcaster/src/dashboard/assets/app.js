// The dashboard's entry: a hash router over page modules, the first-run flow, live events.
//
// Front-end approach: plain ES modules and CSS served from the binary (include_str!), no
// framework and no build step, so `cargo build` alone produces the dashboard and every file
// the browser runs is the file in the repository.
import { api, getKey, setKey, emulatorMode, ApiError } from "./api.js";
import { el, put, $, toast } from "./dom.js";
import { openLive, closeLive } from "./live.js";
import * as welcome from "./welcome.js";
import * as accounts from "./accounts.js";
import * as chats from "./chats.js";
import * as contacts from "./contacts.js";
import * as templates from "./templates.js";
import * as campaigns from "./campaigns.js";
import * as webhooks from "./webhooks.js";
import * as phone from "./phone.js";

const pages = [
  ["accounts", "Accounts", accounts],
  ["chats", "Chats", chats],
  ["contacts", "Contacts", contacts],
  ["templates", "Templates", templates],
  ["campaigns", "Campaigns", campaigns],
  ["webhooks", "Webhooks", webhooks],
  ...(emulatorMode ? [["phone", "Simulated phones", phone]] : []),
];

let current = null; // { name, cleanup }

function route() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  return { name: name || "accounts", arg: rest.map(decodeURIComponent).join("/") || null };
}

function renderNav(active) {
  const nav = $("#nav");
  const keyed = Boolean(getKey()) && active !== "welcome";
  put(nav, ...(keyed ? pages.map(([name, label]) =>
    el("a", { href: "#/" + name, "data-page": name, ...(name === active ? { "aria-current": "page" } : {}) }, label)) : []));
  $("#key-button").hidden = !keyed;
}

async function show() {
  const { name, arg } = route();
  if (current && current.cleanup) current.cleanup();
  current = null;
  const main = $("#main");
  put(main);
  let target = name;
  if (!getKey()) target = "welcome";
  renderNav(target);
  const hash = location.hash;
  delete main.dataset.route;
  if (target === "welcome") {
    document.title = "Welcome · Broadcaster";
    main.dataset.page = "welcome";
    current = { name: target, cleanup: welcome.render(main, { arg, useKey }) };
    main.dataset.route = hash;
    return;
  }
  const page = pages.find(([n]) => n === target) || pages[0];
  document.title = page[1] + " · Broadcaster";
  main.dataset.page = page[0];
  try {
    const cleanup = await page[2].render(main, { arg });
    // A later navigation may have replaced this page while it loaded.
    if (location.hash !== hash) { if (cleanup) cleanup(); return; }
    current = { name: page[0], cleanup };
    // Set once the page has drawn: scripts (the browser test) wait for it.
    main.dataset.route = hash;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { setKey(""); closeLive(); location.hash = "#/welcome/bad-key"; return; }
    toast(e.message, true);
  }
}

/** Checks a key against the API; on success keeps it and goes on with the first run. */
async function useKey(k) {
  setKey(k);
  let list;
  try { list = await api("GET", "/api/v1/accounts"); } catch (e) { setKey(""); throw e; }
  openLive();
  location.hash = list.length ? "#/accounts" : "#/welcome/first-account";
}

$("#key-button").addEventListener("click", () => { location.hash = "#/welcome/change-key"; });
window.addEventListener("hashchange", show);
if (getKey()) openLive();
show();
