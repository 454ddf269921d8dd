/*
 * The /viewer page: pick or create an annotation, drop PNG masks, PUT them straight to
 * storage through the signed URLs the server hands out (with exactly its headers, less
 * Content-Length, which browsers set themselves), complete, then list and preview groups.
 */
(function () {
  "use strict";

  const SLICE_NAME = /^(\d+)_([A-Za-z0-9_-][A-Za-z0-9._-]*?)\.[A-Za-z0-9]+$/;
  const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;
  const PUT_CONCURRENCY = 6; // browsers open at most 6 connections per host

  const {
    showError, showInfo, ApiError, subjectOf, formatBytes, md5Base64, put, runPool,
  } = window.PacsViewer;
  const api = (method, path, body, headers) =>
    window.PacsViewer.api(state.token, method, path, body, headers);
  const $ = (sel) => document.querySelector(sel);
  const state = {
    token: sessionStorage.getItem("pacs-ext-token") || "",
    annotationId: null,
    files: new Map(), // name → entry {file, name, slice, label, row, bar, status, done}
    group: null, // the pending group of the current upload, for retries
    busy: false,
  };

  const groupsPath = (annotationId) => `/api/annotations/${annotationId}/mask-groups`;

  // ---- token and annotations -------------------------------------------------------------

  async function useToken() {
    const token = $("#token").value.trim();
    if (!token) return showError("the token is empty: paste a bearer token");
    if (!subjectOf(token)) return showError("that does not look like a JWT (three dot-separated parts)");
    state.token = token;
    sessionStorage.setItem("pacs-ext-token", token);
    if (await loadAnnotations()) {
      $("#whoami").textContent = `signed in as ${subjectOf(token)}`;
      showInfo(`token accepted for ${subjectOf(token)}`);
    }
  }

  async function loadAnnotations(selectId) {
    let page;
    try {
      page = await api("GET", "/api/annotations?limit=200");
    } catch (err) {
      showError(`could not list annotations: ${err.message}`);
      return false;
    }
    const select = $("#annotation-select");
    select.replaceChildren();
    for (const a of page.items) {
      const option = document.createElement("option");
      option.value = String(a.id);
      option.textContent = `#${a.id} · ${a.study_instance_uid}${a.description ? " · " + a.description : ""}`;
      select.append(option);
    }
    if (!page.items.length) {
      const option = document.createElement("option");
      option.value = "";
      option.textContent = "no annotations yet: create one below";
      select.append(option);
      $("#create-annotation-box").open = true;
    }
    const wanted = selectId !== undefined ? String(selectId) : String(state.annotationId || "");
    if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
    await selectAnnotation();
    return true;
  }

  async function selectAnnotation() {
    const value = $("#annotation-select").value;
    state.annotationId = value ? Number(value) : null;
    state.group = null;
    updateUploadButton();
    await loadGroups();
  }

  async function createAnnotation(event) {
    event.preventDefault();
    try {
      const created = await api("POST", "/api/annotations", {
        study_instance_uid: $("#new-study-uid").value.trim(),
        description: $("#new-description").value.trim() || null,
        viewer_software: "pacs-ext viewer",
      });
      await loadAnnotations(created.id);
      showInfo(`annotation ${created.id} created`);
    } catch (err) {
      showError(`could not create the annotation: ${err.message}`);
    }
  }

  // ---- files -----------------------------------------------------------------------------

  function addFiles(fileList) {
    for (const file of fileList) {
      const old = state.files.get(file.name);
      if (old) old.row.remove();
      const entry = { file, name: file.name, slice: null, label: null, done: false, md5: null };
      const match = SLICE_NAME.exec(file.name);
      if (match) {
        entry.slice = Number(match[1]);
        entry.label = match[2];
      }
      entry.invalid = !SAFE_NAME.test(file.name) || file.name.includes("..")
        ? "name must be [A-Za-z0-9._-] (e.g. 0001_liver.png)"
        : null;
      const row = document.createElement("tr");
      row.dataset.name = file.name;
      const cells = [file.name, entry.slice ?? "", entry.label ?? "", formatBytes(file.size)];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = String(text);
        row.append(td);
      }
      const barCell = document.createElement("td");
      entry.bar = document.createElement("progress");
      entry.bar.max = Math.max(file.size, 1);
      entry.bar.value = 0;
      barCell.append(entry.bar);
      entry.statusCell = document.createElement("td");
      entry.statusCell.className = "status";
      row.append(barCell, entry.statusCell);
      entry.row = row;
      setStatus(entry, entry.invalid ? "failed" : "ready", entry.invalid || "ready");
      $("#file-table tbody").append(row);
      state.files.set(file.name, entry);
    }
    state.group = null; // a changed selection is a new group
    updateUploadButton();
  }

  function setStatus(entry, kind, text) {
    entry.status = kind;
    entry.statusCell.textContent = text;
    entry.statusCell.className = `status status-${kind}`;
    entry.row.dataset.status = kind;
  }

  function updateUploadButton() {
    const usable = [...state.files.values()].filter((e) => !e.invalid);
    const button = $("#upload-button");
    button.disabled = state.busy || !usable.length || !state.annotationId;
    button.textContent = state.group ? "Retry failed files" : "Upload";
  }

  function specOf(entry) {
    const spec = {
      filename: entry.name,
      content_type: entry.file.type || "application/octet-stream",
      size: entry.file.size,
      md5: entry.md5,
    };
    if (entry.slice !== null) {
      spec.slice_index = entry.slice;
      spec.label_name = entry.label;
    }
    return spec;
  }

  // ---- upload ------------------------------------------------------------------------------

  function updateOverall() {
    let sent = 0;
    let total = 0;
    let done = 0;
    const entries = [...state.files.values()].filter((e) => !e.invalid);
    for (const e of entries) {
      total += e.file.size;
      sent += e.done ? e.file.size : Number(e.bar.value);
      if (e.done) done++;
    }
    $("#overall-progress").max = Math.max(total, 1);
    $("#overall-progress").value = sent;
    $("#overall-text").textContent = `${done}/${entries.length} files · ${formatBytes(sent)} of ${formatBytes(total)}`;
  }

  async function uploadOne(entry, target) {
    if (!target || !target.url) {
      // Multipart targets (very large files on S3 stores) are for the SDK and the CLI.
      setStatus(entry, "failed", "too large for the browser page: upload it with `pacs-ext upload`");
      return false;
    }
    setStatus(entry, "uploading", "uploading");
    let resent = false;
    for (let attempt = 1; ; attempt++) {
      try {
        await put(entry.file, target, (loaded) => {
          entry.bar.value = loaded;
          updateOverall();
        });
        entry.done = true;
        entry.bar.value = entry.bar.max;
        setStatus(entry, "done", "uploaded");
        updateOverall();
        return true;
      } catch (err) {
        entry.bar.value = 0;
        if (err.expired && attempt === 1) {
          // The signed URL ran out while waiting: ask for a fresh one, once.
          const renewed = await api("POST", `${groupsPath(state.annotationId)}/${state.group.id}/upload-urls`,
            { files: [specOf(entry)] });
          target = renewed.uploads[0];
          continue;
        }
        if (err.network && !resent) {
          // No answer at all (a connection closed under the PUT): the same PUT, once more.
          resent = true;
          continue;
        }
        setStatus(entry, "failed", err.message);
        return false;
      }
    }
  }

  async function upload() {
    const entries = [...state.files.values()].filter((e) => !e.invalid && !e.done);
    if (!entries.length || !state.annotationId) return;
    state.busy = true;
    updateUploadButton();
    try {
      for (const e of entries) {
        if (!e.md5) {
          setStatus(e, "hashing", "computing MD5");
          e.md5 = await md5Base64(e.file);
        }
      }
      const specs = entries.map(specOf);
      let targets;
      if (state.group) {
        const path = `${groupsPath(state.annotationId)}/${state.group.id}/upload-urls`;
        targets = (await api("POST", path, { files: specs })).uploads;
      } else {
        const body = { files: specs };
        const groupName = $("#group-name").value.trim();
        const modelName = $("#model-name").value.trim();
        if (groupName) body.group_name = groupName;
        if (modelName) body.model_name = modelName;
        // The key makes a re-sent creation return the same group, never a second one.
        const created = await api("POST", groupsPath(state.annotationId), body,
          { "Idempotency-Key": window.PacsViewer.idempotencyKey() });
        state.group = created;
        targets = created.uploads;
      }
      const byName = new Map(targets.map((t) => [t.filename, t]));
      for (const e of entries) setStatus(e, "queued", "queued");
      updateOverall();
      const results = await runPool(entries, PUT_CONCURRENCY, (e) => uploadOne(e, byName.get(e.name)));
      const failed = results.filter((ok) => !ok).length;
      if (failed) {
        const first = entries.find((e) => e.status === "failed");
        showError(`${failed} of ${entries.length} file(s) failed to upload; mask group ` +
          `${state.group.id} stays pending. First error — ${first.name}: ${first.statusCell.textContent}`);
        await loadGroups();
        return;
      }
      const done = await api("POST", `${groupsPath(state.annotationId)}/${state.group.id}/complete`);
      showInfo(`mask group ${done.id} complete: ${done.mask_count} masks, ${formatBytes(done.total_bytes)}`);
      const groupId = done.id;
      state.group = null;
      await loadGroups();
      await preview(groupId);
    } catch (err) {
      let text = err.message;
      if (err instanceof ApiError && err.body && Array.isArray(err.body.missing)) {
        const names = [...err.body.missing, ...(err.body.mismatched || [])].map((p) => p.filename);
        text += ` (${names.slice(0, 5).join(", ")})`;
      }
      showError(`upload failed: ${text}`);
    } finally {
      state.busy = false;
      updateUploadButton();
    }
  }

  // ---- groups and preview ----------------------------------------------------------------

  async function loadGroups() {
    const body = $("#groups-table tbody");
    body.replaceChildren();
    if (!state.annotationId) return;
    let page;
    try {
      page = await api("GET", `${groupsPath(state.annotationId)}?limit=200`);
    } catch (err) {
      showError(`could not list mask groups: ${err.message}`);
      return;
    }
    for (const g of page.items) {
      const row = document.createElement("tr");
      row.dataset.groupId = String(g.id);
      const cells = [g.id, g.group_name || "", g.status, `${g.mask_count}/${g.file_count}`,
        formatBytes(g.total_bytes), new Date(g.created_at).toLocaleString()];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = String(text);
        row.append(td);
      }
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Preview";
      button.disabled = g.status !== "complete";
      button.addEventListener("click", () => preview(g.id));
      td.append(button);
      row.append(td);
      body.append(row);
    }
  }

  async function preview(groupId) {
    const grid = $("#preview");
    grid.replaceChildren();
    let page;
    try {
      page = await api("GET", `${groupsPath(state.annotationId)}/${groupId}/masks?limit=200`);
    } catch (err) {
      showError(`could not list masks: ${err.message}`);
      return;
    }
    $("#preview-title").textContent =
      `group ${groupId}: ${page.total} mask(s)${page.total > page.items.length ? `, first ${page.items.length} shown` : ""}`;
    listExports(groupId);
    for (const m of page.items) {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = m.filename;
      img.loading = "lazy";
      // <img> cannot send headers: the content route takes the token as a query parameter
      // and redirects to a short-lived signed GET.
      img.src = `${groupsPath(state.annotationId)}/${groupId}/masks/${m.id}/content?access_token=${encodeURIComponent(state.token)}`;
      const caption = document.createElement("figcaption");
      caption.textContent = m.slice_index !== null ? `slice ${m.slice_index} · ${m.label_name}` : m.filename;
      img.addEventListener("error", () => {
        figure.classList.add("broken");
        caption.textContent = `${m.filename}: preview failed`;
      });
      figure.append(img, caption);
      grid.append(figure);
    }
  }

  // The group's DICOM SEG exports, newest first, each with its signed download link.
  async function listExports(groupId) {
    const list = $("#exports");
    list.replaceChildren();
    let page;
    try {
      page = await api("GET", `${groupsPath(state.annotationId)}/${groupId}/exports?limit=20`);
    } catch (err) {
      showError(`could not list exports: ${err.message}`);
      return;
    }
    for (const e of page.items) {
      const item = document.createElement("li");
      item.dataset.exportId = String(e.id);
      const pct = Math.round(e.progress * 100);
      const what = e.status === "succeeded"
        ? `${e.frames} frames, ${formatBytes(e.file_size)}${e.stored ? ", in the PACS" : ""}`
        : e.status === "failed" ? `failed: ${e.error}` : `${e.status} ${pct}% (${e.phase})`;
      item.textContent = `DICOM SEG ${e.id} · ${e.segmentation_type} · ${what} `;
      if (e.download_url) {
        const link = document.createElement("a");
        link.href = e.download_url;
        link.textContent = "download .dcm";
        link.setAttribute("download", `seg-${e.id}.dcm`);
        item.append(link);
      }
      list.append(item);
    }
  }

  // ---- wiring ------------------------------------------------------------------------------

  function init() {
    $("#token").value = state.token;
    $("#token-form").addEventListener("submit", (e) => { e.preventDefault(); useToken(); });
    $("#refresh-annotations").addEventListener("click", () => loadAnnotations());
    $("#annotation-select").addEventListener("change", selectAnnotation);
    $("#create-annotation-form").addEventListener("submit", createAnnotation);
    $("#file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
    const zone = $("#dropzone");
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
    });
    $("#upload-button").addEventListener("click", upload);
    $("#clear-files").addEventListener("click", () => {
      state.files.clear();
      state.group = null;
      $("#file-table tbody").replaceChildren();
      updateOverall();
      updateUploadButton();
    });
    $("#refresh-groups").addEventListener("click", loadGroups);
    window.addEventListener("unhandledrejection", (e) => showError(String(e.reason && e.reason.message || e.reason)));
    if (state.token) {
      $("#whoami").textContent = `signed in as ${subjectOf(state.token) || "?"}`;
      loadAnnotations();
    }
    document.body.dataset.ready = "true";
  }

  init();
})();
