// Contacts: search, tags, opt-out state, add one, import a CSV file, export.
import { api, download } from "./api.js";
import { el, put, button, emptyState, field, guard, toast, splitList, debounced } from "./dom.js";

export async function render(root) {
  const phone = el("input", { id: "ct-phone", required: true, type: "tel", placeholder: "+44 7700 900123", autocomplete: "off" });
  const name = el("input", { id: "ct-name", autocomplete: "off" });
  const tags = el("input", { id: "ct-tags", placeholder: "vip, london" });
  const add = el("form", { class: "row", id: "ct-add-form" }, field("Phone", phone), field("Name", name), field("Tags", tags), el("button", { class: "btn primary", id: "ct-add" }, "Add contact"));
  add.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    await api("POST", "/api/v1/contacts", { phone: phone.value, name: name.value || null, tags: splitList(tags.value) });
    phone.value = ""; name.value = ""; toast("contact added"); await load();
  }));

  const file = el("input", { id: "ct-file", type: "file", accept: ".csv,text/csv", required: true });
  const country = el("input", { id: "ct-country", placeholder: "44", size: "6", inputmode: "numeric" });
  const importTags = el("input", { id: "ct-import-tags", placeholder: "launch" });
  const report = el("div", { id: "import-report", role: "status" });
  const imp = el("form", { class: "row", id: "ct-import-form" },
    field("CSV file", file, "A header row; columns phone, name, tags and any others become fields."),
    field("Default country code", country), field("Tags for every row", importTags),
    el("button", { class: "btn", id: "ct-import" }, "Import"));
  imp.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const f = file.files[0];
    const form = new FormData();
    form.append("file", f, f.name);
    for (const t of splitList(importTags.value)) form.append("tags", t);
    if (country.value.trim()) form.append("default_country", country.value.trim());
    const r = await api("POST", "/api/v1/contacts/import", form);
    put(report, el("p", { id: "import-summary" }, `${r.rows} rows: ${r.created} created, ${r.merged} merged, ${r.errors.length} with errors`),
      r.errors.length ? el("ul", { class: "error" }, r.errors.slice(0, 20).map((x) => el("li", { class: "import-error" }, `line ${x.line}: ${x.error}`))) : null);
    await load();
  }));

  const q = el("input", { id: "ct-filter", type: "search", placeholder: "Name or phone", autocomplete: "off" });
  const tagSel = el("select", { id: "ct-tag-filter" }, el("option", { value: "" }, "All tags"));
  const total = el("span", { id: "ct-total", class: "muted", role: "status" });
  const list = el("div", { id: "contacts" });
  root.append(
    el("div", { class: "page-head" }, el("h1", {}, "Contacts"), button("Export CSV", () => download("/api/v1/contacts/export", "contacts.csv"), "", { id: "ct-export" })),
    el("details", { class: "card", open: true }, el("summary", {}, "Import a CSV file"), imp, report),
    el("details", { class: "card" }, el("summary", {}, "Add one contact"), add),
    el("div", { class: "row" }, field("Search", q), field("Tag", tagSel), total),
    list);

  async function load() {
    const params = new URLSearchParams({ limit: "200" });
    if (q.value) params.set("q", q.value);
    if (tagSel.value) params.set("tag", tagSel.value);
    const [page, allTags] = await Promise.all([api("GET", "/api/v1/contacts?" + params), api("GET", "/api/v1/tags")]);
    total.textContent = page.total + (page.total === 1 ? " contact" : " contacts");
    const v = tagSel.value;
    put(tagSel, el("option", { value: "" }, "All tags"), ...allTags.map((t) => el("option", { value: t.tag }, `${t.tag} (${t.contacts})`)));
    tagSel.value = v;
    if (!page.items.length) {
      put(list, q.value || tagSel.value ? el("p", { class: "muted pad" }, "No contact matches the search.")
        : emptyState("No contacts yet", "Import a CSV file (a phone column is enough) or add people one by one. Tags pick a campaign's audience."));
      return;
    }
    put(list, el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Contacts" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Phone"), el("th", { scope: "col" }, "Tags"), el("th", { scope: "col" }, "Messages"))),
      el("tbody", {}, page.items.map((c) => el("tr", { "data-contact": c.id },
        el("td", {}, c.name || el("span", { class: "muted" }, "—")), el("td", {}, c.phone),
        el("td", {}, c.tags.map((t) => el("span", { class: "tag" }, t))),
        el("td", {}, c.opted_out ? el("span", { class: "badge s-error" }, "Opted out") : el("span", { class: "muted" }, "Allowed"), " ",
          button(c.opted_out ? "Opt back in" : "Opt out", async () => { await api("POST", `/api/v1/contacts/${c.id}/${c.opted_out ? "opt-in" : "opt-out"}`); await load(); }, "small ghost"))))))));
  }
  const reload = debounced(load, 250);
  q.addEventListener("input", reload);
  tagSel.addEventListener("change", reload);
  await load();
  return null;
}
