// First run: where the API key comes from, then the first account with scan instructions.
import { api, setKey, getKey } from "./api.js";
import { el, field, toast } from "./dom.js";
import { closeLive } from "./live.js";
import { openLink } from "./link.js";

export function render(root, { arg, useKey }) {
  if (arg === "first-account" && getKey()) return firstAccount(root);
  const input = el("input", { id: "api-key", type: "password", autocomplete: "off", spellcheck: "false", required: true, placeholder: "bk_…" });
  const error = el("p", { class: "error", id: "key-error", role: "alert" }, arg === "bad-key" ? "The server did not accept the saved key; enter it again." : "");
  const form = el("form", { class: "stack", id: "key-form" },
    field("API key", input, "Stored in this browser only; every request sends it to this server."),
    el("div", { class: "row" }, el("button", { class: "btn primary", id: "save-key" }, "Continue"),
      getKey() ? el("button", { type: "button", class: "btn", id: "forget-key", onclick: () => { setKey(""); closeLive(); location.hash = "#/welcome"; } }, "Forget the key") : null),
    error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try { await useKey(input.value.trim()); } catch (err) {
      error.textContent = err.status === 401 ? "This key was not accepted. Copy it again from the start banner or the key file." : err.message;
    }
  });
  root.append(el("section", { class: "welcome card", "aria-labelledby": "welcome-title" },
    el("p", { class: "step" }, "Step 1 of 2"),
    el("h1", { id: "welcome-title" }, "Welcome to Broadcaster"),
    el("p", {}, "Send WhatsApp messages from many accounts through one API. The dashboard uses the same API, so it needs an API key."),
    el("h2", {}, "Where is my key?"),
    el("ul", {},
      el("li", {}, "At its first start the server printed a banner in its terminal (or service log) with a line ", el("code", {}, "Admin key: bk_…"), ". Copy that key."),
      el("li", {}, "The banner also says the file it saved the key to (mode 0600, in the data directory); later starts print that file's path instead of the key."),
      el("li", {}, "If BROADCASTER_ADMIN_KEY was set at the first start, that value is the key."),
      el("li", {}, "Admins can make keys with fewer rights (read, send) through POST /api/v1/keys.")),
    form));
  input.focus();
  return null;
}

function firstAccount(root) {
  const name = el("input", { id: "first-account-name", required: true, placeholder: "e.g. Sales", autocomplete: "off" });
  const form = el("form", { class: "stack", id: "first-account-form" },
    field("Account name", name, "A label for you; the phone number comes from the phone that links."),
    el("div", { class: "row" }, el("button", { class: "btn primary", id: "first-account-create" }, "Add account and show the QR code"),
      el("a", { class: "btn", href: "#/accounts" }, "Skip for now")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const a = await api("POST", "/api/v1/accounts", { name: name.value.trim() });
      location.hash = "#/accounts";
      openLink(a, false);
    } catch (err) { toast(err.message, true); }
  });
  root.append(el("section", { class: "welcome card", "aria-labelledby": "first-title" },
    el("p", { class: "step" }, "Step 2 of 2"),
    el("h1", { id: "first-title" }, "Add your first WhatsApp account"),
    el("p", {}, "An account is a WhatsApp number this server sends from. It links like WhatsApp Web: the server becomes one of the phone's linked devices."),
    el("ol", {},
      el("li", {}, "Name the account below; a QR code appears."),
      el("li", {}, "On the phone open WhatsApp → Settings (or the ⋮ menu) → Linked devices → Link a device."),
      el("li", {}, "Point the phone's camera at the QR code. It changes every 20 seconds or so; the dashboard shows each new one."),
      el("li", {}, "Prefer typing? Choose \"Link with a code\" on the account and enter the 8-character code on the phone under Link with phone number instead.")),
    form));
  name.focus();
  return null;
}
