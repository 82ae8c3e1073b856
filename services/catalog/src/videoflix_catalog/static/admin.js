// Videoflix admin page: sign in through the auth API, upload resumably (tus) with progress, and manage
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
  await loadUnfinished().catch(() => {});
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

// -- upload (tus: resumable, in chunks) ----------------------------------------------------
// tus-js-client (vendored, static/vendor/tus.min.js) sends the file in chunks of at most
// 50 MB to the catalog's tus endpoint. It retries lost chunks by itself, and remembers each
// upload's URL in localStorage (keyed by the file's name, type, size and date), so choosing
// the same file after a page reload continues where the server says the upload stands.

const TUS_PATH = document.body.dataset.tusPath;
const MAX_CHUNK_BYTES = 50_000_000;
let currentUpload = null;

// A smaller chunk for tests and slow links: /admin/?chunk_size=<bytes> (never above 50 MB).
function chunkSize() {
  const asked = Number(new URLSearchParams(location.search).get("chunk_size"));
  const configured = Number(document.body.dataset.chunkSize) || MAX_CHUNK_BYTES;
  return Math.min(asked > 0 ? asked : configured, MAX_CHUNK_BYTES);
}

function formatBytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function formatDuration(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "…";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// Speed over the last ~5 seconds of this page's sending (not since the upload began).
class Speedometer {
  constructor() { this.samples = []; }
  add(bytes) {
    const now = performance.now();
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
  }
  bytesPerSecond() {
    if (this.samples.length < 2) return 0;
    const [t0, b0] = this.samples[0];
    const [t1, b1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
  }
}

function tusErrorText(error) {
  const response = error && error.originalResponse;
  if (response) {
    let body = null;
    try { body = JSON.parse(response.getBody()); } catch { /* not JSON */ }
    return errorText(body, `Upload failed (${response.getStatus()}).`);
  }
  return "Upload interrupted: the connection was lost. Press Resume, or choose the file again later.";
}

function setUploadButtons(state) {
  // state: "idle" | "running" | "paused"
  $("upload-submit").disabled = state !== "idle";
  $("upload-pause").hidden = state !== "running";
  $("upload-resume").hidden = state !== "paused";
}

function showProgress(sent, total, speedometer) {
  const percent = total ? Math.floor((sent / total) * 100) : 0;
  const progress = $("upload-progress");
  progress.hidden = false;
  progress.value = percent;
  $("upload-percent").textContent = percent + "%";
  speedometer.add(sent);
  const speed = speedometer.bytesPerSecond();
  const eta = speed > 0 ? (total - sent) / speed : NaN;
  $("upload-stats").textContent = `${formatBytes(sent)} of ${formatBytes(total)} · `
    + `${speed > 0 ? formatBytes(speed) + "/s" : "…"} · ${formatDuration(eta)} left`;
}

function finishUpload(text, isError) {
  setUploadButtons(isError && currentUpload && currentUpload.url ? "paused" : "idle");
  $("upload-message").textContent = text;
  toast(text, isError);
  loadUnfinished().catch(() => {});
}

function makeUpload(file) {
  const speedometer = new Speedometer();
  const upload = new tus.Upload(file, {
    endpoint: TUS_PATH,
    chunkSize: chunkSize(),
    retryDelays: [1000, 3000, 5000, 10000, 20000, 30000],
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    metadata: {
      title: $("upload-title").value,
      description: $("upload-description").value,
      category: $("upload-category").value,
      publish_when_ready: $("upload-publish").checked ? "true" : "false",
      filename: file.name,
      filetype: file.type || "application/octet-stream",
    },
    onBeforeRequest(request) {
      request.getUnderlyingObject().withCredentials = true;
      request.setHeader("X-CSRFToken", cookie("csrftoken")); // read fresh: a refresh may rotate it
    },
    onShouldRetry(error, attempt, options) {
      const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
      if (status === 401) {
        // The access token ran out during a long upload: refresh it, then retry the chunk.
        refreshSession().catch(() => false);
        return attempt < 2;
      }
      return !status || status === 409 || status === 423 || status >= 500;
    },
    onProgress(sent, total) { showProgress(sent, total, speedometer); },
    onSuccess(payload) {
      const response = payload && payload.lastResponse;
      const videoId = response ? response.getHeader("Video-Id") : null;
      $("upload-form").reset();
      selectFirstCategory();
      $("upload-progress").value = 100;
      $("upload-percent").textContent = "100%";
      currentUpload = null;
      finishUpload(`“${file.name}” uploaded${videoId ? ` (video ${videoId})` : ""}. `
        + "Transcoding has started; watch its status below.", false);
      refreshVideosAndCounts();
    },
    onError(error) {
      const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
      if (status === 401) showLogin("Your session has expired. Sign in again, then choose the file to resume.");
      if (status >= 400 && status < 500 && status !== 401) currentUpload = null; // refused: nothing to resume
      finishUpload(tusErrorText(error), true);
    },
  });
  return upload;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) { toast("Choose a video file first.", true); return; }
  const upload = makeUpload(file);
  currentUpload = upload;
  setUploadButtons("running");
  $("upload-stats").textContent = "";
  const previous = await upload.findPreviousUploads();
  if (previous.length) {
    // Same file as an unfinished upload of this browser: continue it (its metadata were
    // checked when it was created) instead of starting over.
    previous.sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1));
    upload.resumeFromPreviousUpload(previous[0]);
    $("upload-message").textContent = `Resuming ${file.name}…`;
  } else {
    $("upload-message").textContent = `Uploading ${file.name}…`;
  }
  upload.start();
});

$("upload-pause").addEventListener("click", () => {
  if (!currentUpload) return;
  currentUpload.abort();
  setUploadButtons("paused");
  $("upload-message").textContent = "Paused. Resume continues from the last chunk the server stored.";
});

$("upload-resume").addEventListener("click", () => {
  if (!currentUpload) return;
  setUploadButtons("running");
  $("upload-message").textContent = "Resuming…";
  currentUpload.start();
});

async function loadUnfinished() {
  const uploads = await api("GET", TUS_PATH);
  $("unfinished-card").hidden = uploads.length === 0;
  $("unfinished-body").replaceChildren(...uploads.map((u) => {
    const row = document.createElement("tr");
    row.dataset.uploadId = u.id;
    const cells = [u.title, u.filename,
      `${formatBytes(u.offset)} of ${formatBytes(u.length)} (${Math.floor((u.offset / u.length) * 100)}%)`,
      new Date(u.expires_at).toLocaleString()];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    const actions = document.createElement("td");
    actions.append(button("Discard", "discard-upload", () => discardUpload(u)));
    row.append(actions);
    return row;
  }));
}

async function discardUpload(upload) {
  if (!confirm(`Discard the unfinished upload of “${upload.title}”? Its bytes are deleted.`)) return;
  try {
    await tus.Upload.terminate(upload.location, {
      retryDelays: [500, 1000, 2000],
      onBeforeRequest(request) {
        request.getUnderlyingObject().withCredentials = true;
        request.setHeader("X-CSRFToken", cookie("csrftoken"));
      },
    });
    toast("Upload discarded.");
  } catch (err) {
    toast(tusErrorText(err), true);
  }
  await loadUnfinished().catch(() => {});
}

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
