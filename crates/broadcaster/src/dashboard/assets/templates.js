// Templates: list, create, edit, delete, with a live preview rendered for sample contacts.
import { api } from "./api.js";
import { el, put, button, emptyState, field, guard, toast, splitList, size, debounced, base64Of, confirmDialog } from "./dom.js";

export function mediaText(m) {
  if (!m) return "";
  return [m.kind, m.mimetype, size(m.size), m.file_name].filter(Boolean).join(" · ");
}

export async function render(root) {
  const list = el("div", { id: "templates", class: "grid" });
  const editor = el("div", { id: "tpl-editor" });
  root.append(el("div", { class: "page-head" }, el("h1", {}, "Templates"), button("New template", () => edit(null), "primary", { id: "tpl-new" })), editor, list);
  let samples = [];

  async function load() {
    const [templates, contacts] = await Promise.all([api("GET", "/api/v1/templates"), api("GET", "/api/v1/contacts?limit=3")]);
    samples = contacts.items;
    put(list, ...(templates.length ? templates.map((t) => el("article", { class: "card", "data-template": t.id },
      el("h2", {}, t.name),
      el("p", { class: "pre" }, t.body),
      t.variables.length ? el("p", { class: "muted small" }, "Per-send values: " + t.variables.map((v) => v.name).join(", ")) : null,
      t.media ? el("p", { class: "muted small tpl-media" }, "📎 " + mediaText(t.media)) : null,
      el("div", { class: "row" }, button("Edit", () => edit(t), "", { "data-action": "edit" }),
        button("Delete", async () => { if (await confirmDialog(`Delete the template ${t.name}?`)) { await api("DELETE", `/api/v1/templates/${t.id}`); toast("template deleted"); await load(); } }, "danger ghost", { "data-action": "delete" }))))
      : [emptyState("No templates yet", "A template is a message with blanks like {{name|there}} filled per contact, optionally with an image or document. Campaigns send them.",
        button("Write the first template", () => edit(null), "primary"))]));
  }

  function edit(t) {
    const name = el("input", { id: "tpl-name", required: true, value: t ? t.name : "", autocomplete: "off" });
    const body = el("textarea", { id: "tpl-body", required: true, rows: "4", placeholder: "Hi {{name|there}}, your code is {{code}}" }, t ? t.body : "");
    const vars = el("input", { id: "tpl-vars", value: t ? t.variables.map((v) => v.name).join(", ") : "", placeholder: "code" });
    const kind = el("select", { id: "tpl-media-kind" }, [["", t && t.media ? "Keep the current file" : "No media"], ["image", "Image"], ["video", "Video"], ["audio", "Audio"], ["document", "Document"]].map(([v, l]) => el("option", { value: v }, l)));
    const file = el("input", { id: "tpl-media-file", type: "file" });
    const preview = el("div", { id: "tpl-preview", class: "previews", role: "status", "aria-live": "polite" });
    const form = el("form", { class: "card stack", id: "tpl-form", "aria-label": t ? "Edit template" : "New template" },
      el("h2", {}, t ? "Edit " + t.name : "New template"),
      el("div", { class: "cols" },
        el("div", { class: "stack" }, field("Name", name), field("Message", body, "{{field|fallback}} takes a contact's field (name, phone, or a CSV column)."),
          field("Per-send values", vars, "Comma separated; filled when sending."),
          el("div", { class: "row" }, field("Media", kind), field("File", file)), t && t.media ? el("p", { class: "muted small" }, "Current file: " + mediaText(t.media)) : null),
        el("div", {}, el("h3", {}, "Preview"), preview)),
      el("div", { class: "row" }, el("button", { class: "btn primary", id: "tpl-save" }, t ? "Save changes" : "Save template"),
        button("Cancel", () => put(editor))));
    const variables = () => splitList(vars.value).map((n) => ({ name: n }));
    const renderPreview = debounced(async () => {
      if (!body.value) { put(preview, el("p", { class: "muted" }, "Type a message to see it for your contacts.")); return; }
      const values = Object.fromEntries(variables().map((v) => [v.name, "‹" + v.name + "›"]));
      const people = samples.length ? samples : [null];
      try {
        const rendered = await Promise.all(people.map((c) => api("POST", "/api/v1/templates/preview", { body: body.value, variables: variables(), values, ...(c ? { contact_id: c.id } : {}) })));
        put(preview, ...rendered.map((r, i) => el("div", { class: "msg out" }, el("div", { class: "bubble" },
          el("div", { class: "sender" }, people[i] ? "To " + (people[i].name || people[i].phone) : "To a sample contact"),
          file.files[0] && kind.value === "image" ? el("div", { class: "muted small" }, "🖼 " + file.files[0].name) : null,
          el("p", { class: "text tpl-out" }, r.text)))));
      } catch (e) { put(preview, el("p", { class: "error" }, e.message)); }
    }, 250);
    for (const c of [name, body, vars, kind, file]) { c.addEventListener("input", renderPreview); c.addEventListener("change", renderPreview); }
    form.addEventListener("submit", guard(async (e) => {
      e.preventDefault();
      const req = { name: name.value.trim(), body: body.value, variables: variables() };
      const f = file.files[0];
      if (kind.value && !f) throw new Error("choose the media file");
      if (f && !kind.value) throw new Error("choose what kind of media the file is");
      if (f) req.media = { kind: kind.value, data_base64: base64Of(await f.arrayBuffer()), ...(f.type ? { mimetype: f.type } : {}), ...(kind.value === "document" ? { file_name: f.name } : {}) };
      if (t) await api("PUT", `/api/v1/templates/${t.id}`, req); else await api("POST", "/api/v1/templates", req);
      toast(t ? "template saved" : "template created");
      put(editor);
      await load();
    }));
    put(editor, form);
    renderPreview();
    name.focus();
  }

  await load();
  return null;
}
