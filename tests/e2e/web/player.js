// Drives the player the way the Videoflix frontend does: fetch with credentials for the
// API, hls.js with withCredentials for the media playlists, one resolution at a time.
"use strict";

const video = document.getElementById("video");
const logBox = document.getElementById("log");

window.player = {
  hls: null,
  fatalErrors: [],
  errors: [],
  fragments: [],  // URLs of every loaded media segment
  resolution: null,

  log(line) {
    logBox.textContent += line + "\n";
  },

  async login(api, email, password) {
    const response = await fetch(`${api}/api/login/`, {
      method: "POST",
      credentials: "include",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
    this.log(`login: ${response.status}`);
    return { status: response.status, body: await response.json(), cookies: document.cookie };
  },

  async listVideos(api) {
    const response = await fetch(`${api}/api/video/`, { credentials: "include" });
    return { status: response.status, body: await response.json() };
  },

  async showThumbnail(url) {
    const img = document.getElementById("thumbnail");
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error(`thumbnail failed to load: ${url}`));
      img.src = url;
    });
    return { width: img.naturalWidth, height: img.naturalHeight };
  },

  // Start (or switch) playback of one rendition, keeping the position like the frontend.
  play(api, videoId, resolution) {
    const position = video.currentTime || 0;
    if (this.hls) this.hls.destroy();
    this.resolution = resolution;
    const hls = new Hls({ xhrSetup: (xhr) => { xhr.withCredentials = true; } });
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      const text = `${data.type}:${data.details}${data.response ? ` (HTTP ${data.response.code})` : ""}`;
      this.errors.push(text);
      if (data.fatal) this.fatalErrors.push(text);
      this.log(`hls error ${data.fatal ? "FATAL " : ""}${text}`);
    });
    hls.on(Hls.Events.FRAG_LOADED, (_event, data) => {
      this.fragments.push(data.frag.url);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      if (position > 0) video.currentTime = position;
      video.play().catch((err) => this.log(`play() refused: ${err}`));
    });
    hls.loadSource(`${api}/api/video/${videoId}/${resolution}/index.m3u8`);
    hls.attachMedia(video);
    this.log(`playing ${videoId} at ${resolution} from ${position.toFixed(2)}s`);
  },

  state() {
    return {
      currentTime: video.currentTime,
      paused: video.paused,
      videoHeight: video.videoHeight,
      resolution: this.resolution,
      fatalErrors: this.fatalErrors,
      errors: this.errors,
      fragments: this.fragments,
      mediaError: video.error ? `${video.error.code}: ${video.error.message}` : null,
    };
  },
};
