// genrekit serve: the page. Plain JavaScript, no libraries, no network but this server.
//
// Flow: GET /v1/model (labels, limits) → the user drops or chooses a file → POST
// /v1/predict?spectrogram=1 → draw the genre, a bar chart of the probabilities (SVG),
// the log-mel spectrogram with segment boundaries (canvas) and a strip of the
// per-segment votes. When the model abstains (genre null), the headline says why in
// words ("Not music", "Uncertain — best guess: jazz 41 %") and the probabilities are
// still drawn. Errors show the server's {"error", "detail"} message.
// document.body.dataset.state is "idle", "busy", "done" or "error".
"use strict";

(() => {
  const PLOT = { left: 56, right: 64, top: 8, bottom: 30 }; // keep in step with style.css
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#8c8c8c", "#1f9e89", "#d62728", "#17becf", "#bcbd22", "#7f3c8d", "#e377c2"];
  // magma, 9 anchors from black to pale yellow; interpolated to 256 levels
  const MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
    [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  let labels = [];
  let limits = {};
  let abstention = {};
  let lastResult = null;

  const lut = (() => {
    const out = new Uint8ClampedArray(256 * 3);
    for (let v = 0; v < 256; v++) {
      const pos = (v / 255) * (MAGMA.length - 1);
      const i = Math.min(Math.floor(pos), MAGMA.length - 2);
      const f = pos - i;
      for (let c = 0; c < 3; c++) out[v * 3 + c] = MAGMA[i][c] + f * (MAGMA[i + 1][c] - MAGMA[i][c]);
    }
    return out;
  })();

  function colourOf(genre) {
    let i = labels.indexOf(genre);
    if (i < 0) i = [...genre].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) >>> 0, 7);
    return PALETTE[i % PALETTE.length];
  }

  function textOn(hex) {
    // dark text on light colours, white on dark ones (relative luminance, roughly)
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.55 ? "#1d2330" : "#ffffff";
  }

  function formatSeconds(s) {
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    return `${m}:${String(Math.round(s - 60 * m)).padStart(2, "0")} min`;
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1048576).toFixed(1)} MB`;
  }

  function el(tag, attrs = {}, text = "") {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  // ------------------------------------------------------------------ state

  function setState(state, message = "") {
    document.body.dataset.state = state;
    $("status").textContent = message;
  }

  function showError(title, detail) {
    $("error-title").textContent = title;
    $("error-detail").textContent = detail;
    $("error").hidden = false;
    $("result").hidden = true;
    lastResult = null;
    setState("error", "");
  }

  async function loadModel() {
    try {
      const response = await fetch("/v1/model");
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const card = await response.json();
      labels = card.labels || [];
      const backbone = card.model_config && card.model_config.backbone ? ` · backbone ${card.model_config.backbone}` : "";
      $("model-info").textContent = `model ${card.model_id}${backbone} · ${labels.length} genres: ${labels.join(", ")}`;
      limits = card.limits || {};
      abstention = card.abstention || {};
      if (limits.max_upload_mb) {
        $("limits").textContent = `Up to ${limits.max_upload_mb} MB and ${formatSeconds(limits.max_duration_s)} of audio · ` +
          "MP3, WAV, FLAC, OGG, M4A and more";
      }
    } catch (e) {
      $("model-info").textContent = `model information unavailable (${e.message})`;
    }
  }

  // --------------------------------------------------------------- request

  async function classify(file) {
    if (document.body.dataset.state === "busy") return;
    $("error").hidden = true;
    if (limits.max_upload_mb && file.size > limits.max_upload_mb * 1048576) {
      // the server would refuse it too (413), but only after the upload had started
      showError(`Could not classify ${file.name}`, `${file.name} is ${formatBytes(file.size)}; the server ` +
        `accepts files up to ${limits.max_upload_mb} MB. [413 upload_too_large]`);
      return;
    }
    setState("busy", `Uploading and analysing ${file.name} (${formatBytes(file.size)})…`);
    const form = new FormData();
    form.append("file", file, file.name);
    let response;
    try {
      response = await fetch("/v1/predict?spectrogram=1", { method: "POST", body: form });
    } catch (e) {
      showError(`Could not classify ${file.name}`, `The server could not be reached (${e.message}).`);
      return;
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok || !body || body.error) {
      const detail = body && body.detail ? body.detail : `The server answered HTTP ${response.status}.`;
      const code = body && body.error ? ` [${response.status} ${body.error}]` : "";
      showError(`Could not classify ${file.name}`, detail + code);
      return;
    }
    lastResult = body;
    render(body);
    const done = body.genre ? "Classified" : "Analysed";
    setState("done", `${done} ${body.path} in ${body.processing_seconds.toFixed(2)} s on the server.`);
  }

  // ---------------------------------------------------------------- render

  function percent(p) {
    return `${Math.round(100 * p)} %`;
  }

  // The headline: the genre, or why the model abstains, in words.
  function verdict(result) {
    const [guess, p] = Object.entries(result.probabilities)[0] || ["?", 0];
    if (result.genre) return { text: result.genre, note: "" };
    if (result.abstain === "not_music") {
      const music = result.music_probability == null ? "" : ` (music probability ${percent(result.music_probability)})`;
      if (result.reason) return { text: "Not music", note: `The file is silent (${result.reason}), so there is no genre to name.` };
      return { text: "Not music", note: `The model does not hear music in this file${music}, so it names no genre.` };
    }
    const threshold = abstention.min_confidence ? `, below its threshold of ${percent(abstention.min_confidence)}` : "";
    return { text: `Uncertain — best guess: ${guess} ${percent(p)}`,
      note: `No genre is likely enough${threshold}; the probabilities are below.` };
  }

  function render(result) {
    $("result").hidden = false;
    const said = verdict(result);
    const genre = $("genre");
    genre.textContent = said.text;
    genre.classList.toggle("abstain", !result.genre);
    genre.style.borderColor = result.genre ? colourOf(result.genre) : "";
    $("result").dataset.abstain = result.abstain || "";
    $("genre-label").textContent = result.genre ? "Predicted genre" : "No genre";
    $("verdict-note").textContent = said.note;
    $("verdict-note").hidden = !said.note;
    $("confidence").textContent = result.segments.length ? `${(100 * result.confidence).toFixed(1)} %` : "–";
    $("filename").textContent = result.path;
    $("duration").textContent = result.duration == null ? "–" : formatSeconds(result.duration);
    $("n-segments").textContent = String(result.segments.length);
    $("processing").textContent = `${result.processing_seconds.toFixed(2)} s`;
    drawBars($("bars"), result);
    drawVotes($("votes"), result);
    drawSpectrogram($("spectrogram"), result);
    drawStrip($("segment-strip"), result);
    drawLegend($("legend"), result);
  }

  function drawBars(svg, result) {
    svg.replaceChildren();
    const entries = Object.entries(result.probabilities);
    const width = Math.max(svg.clientWidth || svg.parentNode.clientWidth || 400, 240);
    const row = 24, nameW = 86, valueW = 54;
    const barW = width - nameW - valueW;
    svg.setAttribute("viewBox", `0 0 ${width} ${entries.length * row}`);
    svg.setAttribute("height", String(entries.length * row));
    entries.forEach(([name, p], i) => {
      const g = el("svg:g", { transform: `translate(0, ${i * row})`, class: name === result.genre ? "bar top" : "bar" });
      g.append(el("svg:title", {}, `${name}: ${(100 * p).toFixed(2)} %`));
      g.append(el("svg:text", { x: nameW - 8, y: row / 2 + 4, "text-anchor": "end", class: "name" }, name));
      g.append(el("svg:rect", { x: nameW, y: 4, width: barW, height: row - 8, fill: "#eef0f4", rx: 3 }));
      g.append(el("svg:rect", { x: nameW, y: 4, width: Math.max(barW * p, 1), height: row - 8, rx: 3,
        fill: colourOf(name), "data-genre": name }));
      g.append(el("svg:text", { x: width - 4, y: row / 2 + 4, "text-anchor": "end", class: "value" },
        `${(100 * p).toFixed(1)} %`));
      svg.append(g);
    });
  }

  function drawVotes(list, result) {
    list.replaceChildren();
    const total = result.segments.length;
    for (const [name, n] of Object.entries(result.votes)) {
      const li = el("li");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colourOf(name);
      li.append(swatch, el("span", {}, name), el("span", { class: "count" }, `${n} of ${total}`));
      list.append(li);
    }
  }

  function decodeBytes(b64) {
    const text = atob(b64);
    const bytes = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  function spectrogramImage(spec) {
    const [rows, cols] = spec.shape;
    const bytes = decodeBytes(spec.data);
    const image = new ImageData(Math.max(cols, 1), rows);
    for (let band = 0; band < rows; band++) {
      const y = rows - 1 - band; // low frequencies at the bottom
      for (let c = 0; c < cols; c++) {
        const v = bytes[band * cols + c], o = (y * cols + c) * 4;
        image.data[o] = lut[v * 3]; image.data[o + 1] = lut[v * 3 + 1]; image.data[o + 2] = lut[v * 3 + 2];
        image.data[o + 3] = 255;
      }
    }
    const off = document.createElement("canvas");
    off.width = Math.max(cols, 1);
    off.height = rows;
    off.getContext("2d").putImageData(image, 0, 0);
    return off;
  }

  function timeStep(seconds, pixels) {
    const steps = [0.5, 1, 2, 3, 5, 10, 15, 30, 60, 120, 300, 600, 1200];
    return steps.find((s) => seconds / s <= pixels / 70) || steps[steps.length - 1];
  }

  function drawSpectrogram(canvas, result) {
    const spec = result.spectrogram;
    const ctx = canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!spec) return;
    const plot = { x: PLOT.left, y: PLOT.top, w: w - PLOT.left - PLOT.right, h: h - PLOT.top - PLOT.bottom };
    const segments = result.segments.slice(0, spec.n_segments);
    const tEnd = segments.length ? segments[segments.length - 1].end : 1;
    const xOf = (t) => plot.x + (t / tEnd) * plot.w;
    const [rows] = spec.shape, k = spec.columns_per_segment;
    const image = spectrogramImage(spec);
    ctx.fillStyle = "#000";
    ctx.fillRect(plot.x, plot.y, plot.w, plot.h);
    ctx.imageSmoothingEnabled = true;
    segments.forEach((seg, i) => {
      ctx.drawImage(image, i * k, 0, k, rows, xOf(seg.start), plot.y, xOf(seg.end) - xOf(seg.start), plot.h);
    });
    drawBoundaries(ctx, plot, segments, xOf);
    drawAxes(ctx, plot, spec, tEnd, xOf);
    drawColourBar(ctx, plot, spec);
    canvas.dataset.drawn = String(segments.length);
  }

  function drawBoundaries(ctx, plot, segments, xOf) {
    ctx.save();
    ctx.strokeStyle = "rgba(125, 235, 255, 0.95)";
    ctx.lineWidth = 1;
    ctx.setLineDash([5, 3]);
    const edges = segments.map((s) => s.start);
    if (segments.length) edges.push(segments[segments.length - 1].end);
    for (const t of edges) {
      const x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, plot.y); ctx.lineTo(x, plot.y + plot.h); ctx.stroke();
    }
    ctx.restore();
  }

  function drawAxes(ctx, plot, spec, tEnd, xOf) {
    ctx.save();
    ctx.fillStyle = "#475467";
    ctx.strokeStyle = "#98a2b3";
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeRect(plot.x - 0.5, plot.y - 0.5, plot.w + 1, plot.h + 1);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const step = timeStep(tEnd, plot.w);
    for (let t = 0; t <= tEnd + 1e-6; t += step) {
      const x = xOf(t);
      ctx.beginPath(); ctx.moveTo(x, plot.y + plot.h); ctx.lineTo(x, plot.y + plot.h + 4); ctx.stroke();
      ctx.fillText(t >= 60 && step >= 60 ? `${t / 60} min` : `${t}`, x, plot.y + plot.h + 6);
    }
    ctx.textAlign = "right";
    ctx.fillText("time (s)", plot.x + plot.w, plot.y + plot.h + 18);
    ctx.textBaseline = "middle";
    const rows = spec.shape[0];
    for (const tick of spec.freq_ticks || []) {
      const y = plot.y + plot.h - ((tick.band + 0.5) / rows) * plot.h;
      ctx.beginPath(); ctx.moveTo(plot.x - 4, y); ctx.lineTo(plot.x, y); ctx.stroke();
      ctx.fillText(tick.label, plot.x - 6, y);
    }
    ctx.translate(12, plot.y + plot.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("Hz (mel scale)", 0, 0);
    ctx.restore();
  }

  function drawColourBar(ctx, plot, spec) {
    const x = plot.x + plot.w + 10, w = 10;
    const gradient = ctx.createLinearGradient(0, plot.y + plot.h, 0, plot.y);
    for (let v = 0; v < 256; v += 32) gradient.addColorStop(v / 255, `rgb(${lut[v * 3]},${lut[v * 3 + 1]},${lut[v * 3 + 2]})`);
    gradient.addColorStop(1, `rgb(${lut[765]},${lut[766]},${lut[767]})`);
    ctx.save();
    ctx.fillStyle = gradient;
    ctx.fillRect(x, plot.y, w, plot.h);
    ctx.fillStyle = "#475467";
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(`${Math.round(spec.vmax)}`, x + w + 3, plot.y);
    ctx.textBaseline = "bottom";
    ctx.fillText(`${Math.round(spec.vmin)}`, x + w + 3, plot.y + plot.h);
    ctx.textBaseline = "middle";
    ctx.fillText(spec.unit === "dB" ? "dB" : "log", x + w + 3, plot.y + plot.h / 2);
    ctx.restore();
  }

  function drawStrip(strip, result) {
    strip.replaceChildren();
    const n = result.spectrogram ? result.spectrogram.n_segments : result.segments.length;
    const segments = result.segments.slice(0, n);
    const tEnd = segments.length ? segments[segments.length - 1].end : 1;
    segments.forEach((seg, i) => {
      const cell = el("div", { class: "cell", "data-genre": seg.genre,
        title: `segment ${i + 1}: ${seg.start.toFixed(1)}–${seg.end.toFixed(1)} s · ${seg.genre} ` +
          `(${(100 * seg.confidence).toFixed(0)} %)` }, seg.genre);
      cell.style.left = `${(100 * seg.start) / tEnd}%`;
      cell.style.width = `${(100 * (seg.end - seg.start)) / tEnd}%`;
      cell.style.background = colourOf(seg.genre);
      cell.style.color = textOn(colourOf(seg.genre));
      strip.append(cell);
    });
  }

  function drawLegend(legend, result) {
    legend.replaceChildren();
    for (const name of Object.keys(result.votes)) {
      const swatch = el("i");
      swatch.style.background = colourOf(name);
      const item = el("span");
      item.append(swatch, document.createTextNode(name));
      legend.append(item);
    }
  }

  // ----------------------------------------------------------------- input

  function setUpInput() {
    const drop = $("drop"), input = $("file");
    input.addEventListener("change", () => {
      if (input.files.length) classify(input.files[0]);
      input.value = "";
    });
    drop.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
    });
    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
    }
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) classify(files[0]);
    });
    // a file dropped beside the zone must not make the browser navigate away
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (lastResult) render(lastResult); }, 150);
    });
  }

  setUpInput();
  loadModel();
})();
