// Videoflix admin page: sign in through the auth API, upload with progress, and manage
// videos and categories through the catalog admin API. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const UPLOAD_PATH = document.body.dataset.uploadPath;
const POLL_MS = 2000;
const STATUS_TEXT = { uploaded: "Waiting", processing: "Processing", ready: "Ready", failed: "Failed" };
let categories = [];
let pollTimer = null;

function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
}

// Error bodies are objects whose values are strings or lists of strings.
function errorText(body, fallback) {
  if (!body || typeof body !== "object") return fallback;
  const parts = Object.entries(body).map(([key, value]) => {
    const text = Array.isArray(value) ? value.join(" ") : String(value);
    return key === "detail" || key === "message" ? text : `${key}: ${text}`;
  });
  return parts.join(" ") || fallback;
}

function toast(text, isError = false) {
  const el = document.createElement("div");
  el.className = "toast" + (isError ? " error" : "");
  el.textContent = text;
  $("messages").append(el);
  setTimeout(() => el.remove(), isError ? 8000 : 4000);
}

class ApiError extends Error {
  constructor(status, body) {
    super(errorText(body, `Request failed (${status}).`));
    this.status = status;
  }
}

async function api(method, path, body, retried = false) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = cookie("csrftoken");
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !retried && (await refreshSession())) {
    return api(method, path, body, true);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function refreshSession() {
  const response = await fetch("/api/token/refresh/", { method: "POST", credentials: "same-origin" });
  return response.ok;
}

// -- session -------------------------------------------------------------------------------

function showLogin(message = "") {
  stopPolling();
  $("admin-section").hidden = true;
  $("account").hidden = true;
  $("login-section").hidden = false;
  $("login-error").textContent = message;
  $("login-email").focus();
}

async function showAdmin() {
  $("login-section").hidden = true;
  $("admin-section").hidden = false;
  $("account").hidden = false;
  try {
    const user = await api("GET", "/api/user/");
    $("account-email").textContent = user.email;
  } catch { /* the page works without the auth service's user endpoint */ }
  await loadCategories();
  await loadVideos();
  startPolling();
}

async function start() {
  try {
    await api("GET", "/api/admin/videos/");
    await showAdmin();
  } catch (err) {
    if (err.status === 403) showLogin("This account is not an administrator. Sign in with an admin account.");
    else showLogin(err.status === 401 ? "" : err.message);
  }
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  $("login-submit").disabled = true;
  try {
    await api("POST", "/api/login/", { email: $("login-email").value, password: $("login-password").value }, true);
    $("login-password").value = "";
    await start();
  } catch (err) {
    $("login-error").textContent = err.message;
  } finally {
    $("login-submit").disabled = false;
  }
});

$("logout-button").addEventListener("click", async () => {
  try { await api("POST", "/api/logout/", undefined, true); } catch { /* cookies may be gone already */ }
  showLogin("You are signed out.");
});

// -- upload --------------------------------------------------------------------------------

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) { toast("Choose a video file first.", true); return; }
  const form = new FormData();
  // Metadata before the file: the server checks it before reading the (large) file.
  form.append("title", $("upload-title").value);
  form.append("description", $("upload-description").value);
  form.append("category", $("upload-category").value);
  form.append("publish_when_ready", $("upload-publish").checked ? "true" : "false");
  form.append("file", file, file.name);

  const xhr = new XMLHttpRequest();
  xhr.open("POST", UPLOAD_PATH);
  xhr.withCredentials = true;
  xhr.setRequestHeader("X-CSRFToken", cookie("csrftoken"));
  xhr.setRequestHeader("Accept", "application/json");
  const progress = $("upload-progress");
  progress.hidden = false;
  progress.value = 0;
  $("upload-submit").disabled = true;
  $("upload-message").textContent = `Uploading ${file.name}…`;
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    const percent = Math.round((e.loaded / e.total) * 100);
    progress.value = percent;
    $("upload-percent").textContent = percent + "%";
  };
  const done = (text, isError) => {
    $("upload-submit").disabled = false;
    $("upload-message").textContent = text;
    toast(text, isError);
  };
  xhr.onload = () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
    if (xhr.status === 202) {
      $("upload-form").reset();
      selectFirstCategory();
      progress.value = 100;
      done(`“${body.video.title}” uploaded. Transcoding has started; watch its status below.`, false);
      refreshVideosAndCounts();
    } else if (xhr.status === 401) {
      done("Your session has expired. Sign in again and retry the upload.", true);
      showLogin();
    } else {
      progress.hidden = true;
      done(errorText(body, `Upload failed (${xhr.status}).`), true);
    }
  };
  xhr.onerror = () => { progress.hidden = true; done("Upload failed: the connection was interrupted.", true); };
  xhr.send(form);
});

// -- videos --------------------------------------------------------------------------------

function startPolling() {
  stopPolling();
  pollTimer = setInterval(() => loadVideos().catch(() => {}), POLL_MS);
}

function stopPolling() {
  if (pollTimer) clearInterval(pollTimer);
  pollTimer = null;
}

async function loadVideos() {
  let videos;
  try {
    videos = await api("GET", "/api/admin/videos/");
  } catch (err) {
    if (err.status === 401 || err.status === 403) showLogin(err.status === 403 ? err.message : "");
    throw err;
  }
  renderVideos(videos);
}

function cell(row, name) {
  let td = row.querySelector(`td[data-col="${name}"]`);
  if (!td) {
    td = document.createElement("td");
    td.dataset.col = name;
    row.append(td);
  }
  return td;
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = "small " + className;
  b.addEventListener("click", onClick);
  return b;
}

function renderVideos(videos) {
  const body = $("videos-body");
  $("videos-empty").hidden = videos.length > 0;
  const keep = new Set(videos.map((v) => String(v.id)));
  for (const row of [...body.rows]) if (!keep.has(row.dataset.videoId)) row.remove();
  videos.forEach((video, index) => {
    let row = body.querySelector(`tr[data-video-id="${video.id}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.videoId = video.id;
      row.id = `video-${video.id}`;
    }
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
    renderRow(row, video);
  });
}

function placeholder() {
  const el = document.createElement("div");
  el.className = "thumb-placeholder";
  return el;
}

// A film is transcoded rung by rung: one line per rendition while any is unfinished, and
// the estimated time until all are ready.
function renditionProgress(video) {
  const rungs = Object.entries(video.renditions_progress || {});
  if (!rungs.length || rungs.every(([, percent]) => percent >= 100)) return [];
  const list = document.createElement("span");
  list.className = "status-detail renditions";
  list.id = `renditions-${video.id}`;
  list.textContent = rungs.map(([name, percent]) =>
    `${name} ${percent >= 100 ? "ready" : `${Math.round(percent)}%`}`).join(" · ");
  if (video.eta_seconds) list.textContent += ` — about ${Math.max(1, Math.round(video.eta_seconds / 60))} min left`;
  return [list];
}

function renderRow(row, video) {
  const signature = JSON.stringify([video.status, video.progress, video.failure_reason, video.title,
    video.category, video.published, video.generation, video.waiting_for, video.renditions_progress,
    video.queue_place, video.eta_seconds]);
  if (row.dataset.signature === signature) return;
  row.dataset.signature = signature;
  row.dataset.status = video.status;

  const thumb = cell(row, "thumb");
  thumb.replaceChildren();
  if (video.thumbnail_url) {
    const img = document.createElement("img");
    img.src = video.thumbnail_url;
    img.alt = "";
    img.loading = "lazy";
    // Until the streaming service serves it (or if it is gone) show the neutral placeholder.
    img.addEventListener("error", () => img.replaceWith(placeholder()));
    thumb.append(img);
  } else {
    thumb.append(placeholder());
  }
  cell(row, "title").textContent = video.title;
  cell(row, "category").textContent = video.category;

  const status = cell(row, "status");
  status.id = `status-${video.id}`;
  status.className = "status";
  status.dataset.status = video.status;
  status.replaceChildren();
  const badge = document.createElement("span");
  badge.className = `badge ${video.status}`;
  badge.textContent = STATUS_TEXT[video.status] || video.status;
  status.append(badge);
  if (video.status === "processing" || video.status === "uploaded") {
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = video.progress;
    bar.setAttribute("aria-label", "Transcoding progress");
    const pct = document.createElement("span");
    pct.className = "status-detail";
    const queued = video.queue_place ? `Queued (place ${video.queue_place})` : "Waiting for a transcoder…";
    pct.textContent = video.status === "uploaded" ? queued : `${Math.round(video.progress)}%`;
    status.append(bar, pct);
  } else if (video.status === "failed") {
    const reason = document.createElement("span");
    reason.className = "status-detail";
    reason.textContent = video.failure_reason || "Transcoding failed.";
    status.append(reason);
  }
  status.append(...renditionProgress(video));
  const waiting = document.createElement("span");
  waiting.className = "status-detail waiting-for";
  waiting.id = `waiting-${video.id}`;
  waiting.textContent = video.waiting_for ? `Waiting for: ${video.waiting_for}` : "Live: viewers see it.";
  status.append(waiting);

  const published = cell(row, "published");
  published.replaceChildren();
  const toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.checked = video.published;
  toggle.className = "publish-toggle";
  toggle.setAttribute("aria-label", `Published: ${video.title}`);
  toggle.addEventListener("change", () => updateVideo(video.id, { published: toggle.checked },
    toggle.checked ? "Published." : "Unpublished."));
  published.append(toggle);

  cell(row, "created").textContent = new Date(video.created_at).toLocaleString();

  const actions = cell(row, "actions");
  actions.replaceChildren();
  const wrap = document.createElement("div");
  wrap.className = "actions";
  wrap.append(
    button("Edit", "secondary edit-button", () => openEditor(video)),
    button("Re-transcode", "secondary retranscode-button", () => retranscode(video)),
    button("Delete", "delete-button", () => removeVideo(video)),
  );
  actions.append(wrap);
}

async function updateVideo(id, changes, message) {
  try {
    await api("PATCH", `/api/admin/videos/${id}/`, changes);
    toast(message);
  } catch (err) {
    toast(err.message, true);
  }
  await loadVideos().catch(() => {});
}

async function retranscode(video) {
  if (!confirm(`Transcode “${video.title}” again? It is hidden from viewers until it is ready.`)) return;
  try {
    await api("POST", `/api/admin/videos/${video.id}/retranscode/`);
    toast("Transcoding started again.");
  } catch (err) {
    toast(err.message, true);
  }
  await loadVideos().catch(() => {});
}

async function removeVideo(video) {
  if (!confirm(`Delete “${video.title}” for good? Its files are removed too.`)) return;
  try {
    await api("DELETE", `/api/admin/videos/${video.id}/`);
    toast("Video deleted.");
  } catch (err) {
    toast(err.message, true);
  }
  await refreshVideosAndCounts();
}

// Category names show how many videos each holds: every change to a video's existence or
// category refreshes that list too, not only the video table.
async function refreshVideosAndCounts() {
  await Promise.all([loadVideos().catch(() => {}), loadCategories().catch(() => {})]);
}

function openEditor(video) {
  $("edit-form").dataset.videoId = video.id;
  $("edit-title").value = video.title;
  $("edit-description").value = video.description;
  fillCategorySelect($("edit-category"), video.category_id);
  $("edit-published").checked = video.published;
  $("edit-error").textContent = "";
  $("edit-dialog").showModal();
}

$("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
$("edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("edit-form").dataset.videoId;
  try {
    await api("PATCH", `/api/admin/videos/${id}/`, {
      title: $("edit-title").value,
      description: $("edit-description").value,
      category: Number($("edit-category").value),
      published: $("edit-published").checked,
    });
    $("edit-dialog").close();
    toast("Changes saved.");
    await refreshVideosAndCounts();
  } catch (err) {
    $("edit-error").textContent = err.message;
  }
});

// -- categories ----------------------------------------------------------------------------

function fillCategorySelect(select, selectedId) {
  select.replaceChildren(...categories.map((c) => {
    const option = document.createElement("option");
    option.value = c.id;
    option.textContent = c.name;
    option.selected = c.id === selectedId;
    return option;
  }));
}

function selectFirstCategory() {
  const select = $("upload-category");
  if (select.options.length) select.selectedIndex = 0;
}

async function loadCategories() {
  categories = await api("GET", "/api/admin/categories/");
  const current = Number($("upload-category").value) || undefined;
  fillCategorySelect($("upload-category"), current);
  const list = $("categories-list");
  list.replaceChildren(...categories.map((c) => {
    const li = document.createElement("li");
    li.dataset.categoryId = c.id;
    const name = document.createElement("span");
    name.textContent = `${c.name} (${c.video_count})`;
    li.append(
      name,
      button("Rename", "secondary", () => renameCategory(c)),
      button("Delete", "", () => deleteCategory(c)),
    );
    return li;
  }));
}

async function renameCategory(category) {
  const name = prompt("New name for the category", category.name);
  if (!name || name === category.name) return;
  try {
    await api("PATCH", `/api/admin/categories/${category.id}/`, { name });
    toast("Category renamed.");
  } catch (err) {
    toast(err.message, true);
  }
  await loadCategories();
  await loadVideos().catch(() => {});
}

async function deleteCategory(category) {
  if (!confirm(`Delete the category “${category.name}”?`)) return;
  try {
    await api("DELETE", `/api/admin/categories/${category.id}/`);
    toast("Category deleted.");
  } catch (err) {
    toast(err.message, true);
  }
  await loadCategories();
}

$("category-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("POST", "/api/admin/categories/", { name: $("category-name").value });
    $("category-name").value = "";
    toast("Category added.");
  } catch (err) {
    toast(err.message, true);
  }
  await loadCategories();
});

start();
