// The admin page's "Transcoding" panel: the transcoder's queued, running and recently failed
// jobs, read-only, from catalog's admin API (which asks the transcoder's dispatcher; a 503
// while it cannot be reached). Refreshed while the admin section is shown. Uses $(), api()
// and formatDuration() of admin.js, which loads first.
"use strict";

const TRANSCODING_PATH = "/api/admin/transcoding/jobs/";
const TRANSCODING_POLL_MS = 3000;
const JOB_STATE_TEXT = { running: "Running", queued: "Queued", failed: "Failed" };

function jobPart(job) {
  const part = job.part || "whole video";
  return job.rungs.length ? `${part} (${job.rungs.join(", ")})` : part;
}

function jobNote(job, generatedAt) {
  if (job.state === "running") {
    return job.started_at
      ? `running for ${formatDuration((generatedAt - Date.parse(job.started_at)) / 1000)}` : "running";
  }
  if (job.state === "queued") {
    if (job.due_in_seconds !== null) return `retry in ${formatDuration(job.due_in_seconds)}`;
    return job.priority === "first" ? "plays first" : "";
  }
  return job.reason || "failed";
}

// The video's title as the Videos table shows it, when it is there.
function jobVideo(job) {
  const title = document.querySelector(`#video-${job.video_id} td[data-col="title"]`);
  return `#${job.video_id}${title ? ` ${title.textContent}` : ""} (generation ${job.generation})`;
}

function renderTranscoding(listing) {
  const generatedAt = Date.parse(listing.generated_at);
  const jobs = [...listing.running, ...listing.queued, ...listing.failed];
  $("transcoding-summary").textContent = `${listing.queued.length} queued · `
    + `${listing.running.length} running · ${listing.failed.length} recently failed`;
  $("transcoding-status").textContent = jobs.length ? "" : "Nothing is queued, running or failed lately.";
  $("transcoding-body").replaceChildren(...jobs.map((job) => {
    const row = document.createElement("tr");
    row.dataset.jobId = job.job_id;
    row.dataset.state = job.state;
    row.dataset.videoId = job.video_id;
    const badge = document.createElement("span");
    badge.className = `badge job-${job.state}`;
    badge.textContent = JOB_STATE_TEXT[job.state] || job.state;
    const cells = [badge, jobVideo(job), jobPart(job), String(job.attempt),
      formatDuration(job.age_seconds), job.worker || "–", jobNote(job, generatedAt)];
    for (const content of cells) {
      const td = document.createElement("td");
      td.append(content);
      row.append(td);
    }
    return row;
  }));
}

async function loadTranscoding() {
  if ($("admin-section").hidden) return;
  const card = $("transcoding-card");
  try {
    renderTranscoding(await api("GET", TRANSCODING_PATH));
    card.dataset.available = "true";
  } catch (err) {
    card.dataset.available = "false";
    if (err.status === 401 || err.status === 403) return; // admin.js asks to sign in
    $("transcoding-summary").textContent = "";
    $("transcoding-status").textContent = err.message;
    $("transcoding-body").replaceChildren();
  }
}

setInterval(loadTranscoding, TRANSCODING_POLL_MS);
loadTranscoding();
