// convscope page: plain JavaScript over the documented HTTP API (/docs).
"use strict";
const $ = (id) => document.getElementById(id);
let imageId = null;
let jobId = null;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : response.statusText);
  return body;
}
const post = (path, body) => api(path, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
const say = (text, error = false) => { $("status").textContent = text; $("status").className = error ? "error" : ""; };
const fill = (select, names) => { select.replaceChildren(...names.map((n) => new Option(n, n))); };
const percent = (p) => (100 * p).toFixed(1) + "%";
const request = (extra) => ({image: imageId, model: $("model").value, ...extra});

function showPredictions(predictions) {
  $("prediction").textContent = predictions[0].label;
  $("predictions").tBodies[0].replaceChildren(...predictions.map((p) => {
    const row = document.createElement("tr");
    row.innerHTML = "<td></td><td></td>";
    row.cells[0].textContent = `${p.label} (${p.class_id})`;
    row.cells[1].textContent = percent(p.probability);
    return row;
  }));
}

async function refresh() {
  if (!imageId) return;
  say("predicting…");
  try {
    const result = await post("/api/predict", request({topk: 5}));
    showPredictions(result.predictions);
    say(`ready (${result.cached ? "cached" : result.seconds + " s"})`);
  } catch (error) { say(error.message, true); }
}

async function chooseSample() {
  imageId = $("sample").value;
  $("input").removeAttribute("src");
  await refresh();
}

async function upload() {
  const file = $("file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  say("uploading…");
  try {
    const result = await api("/api/images", {method: "POST", body: form});
    imageId = result.id;
    $("input").src = URL.createObjectURL(file);
    await refresh();
  } catch (error) { say(`upload refused: ${error.message}`, true); }
}

async function loadLayers() {
  const result = await api(`/api/layers?model=${encodeURIComponent($("model").value)}`);
  const rows = result.layers.map((layer) => {
    const row = document.createElement("tr");
    const field = layer.receptive_field;
    const cells = [layer.name, layer.type, layer.shape ? layer.shape.join("x") : "-",
      field ? (field.size ? field.size.join("x") : "global") : "-",
      field && field.size ? field.jump.join("x") : "-", field && field.size ? field.start.join("x") : "-",
      layer.unusable || ""];
    for (const text of cells) { const cell = row.insertCell(); cell.textContent = text; }
    return row;
  });
  $("layers").tBodies[0].replaceChildren(...rows);
  const spatial = result.layers.filter((l) => !l.unusable).map((l) => l.name);
  fill($("layer"), ["", ...spatial]);
  $("layer").options[0].textContent = "default";
}

async function explain() {
  if (!imageId) return say("choose an image first", true);
  $("explain-info").textContent = "computing…";
  try {
    const layer = $("layer").value || null;
    const result = await post("/api/explain", request({method: $("method").value, layer}));
    $("overlay").src = result.overlay;
    showPredictions(result.predictions);
    $("explain-info").textContent = `${result.method} for "${result.target.label}"` +
      (result.layer ? ` at ${result.layer}` : "") + ` (${result.cached ? "cached" : result.seconds + " s"})`;
  } catch (error) { $("explain-info").textContent = error.message; }
}

async function attack() {
  if (!imageId) return say("choose an image first", true);
  $("attack-info").textContent = "attacking…";
  try {
    const result = await post("/api/attack", request({method: $("attack-method").value, eps: Number($("eps").value) / 255}));
    $("adv-original").src = result.original;
    $("adv-delta").src = result.perturbation;
    $("adv-image").src = result.adversarial;
    const before = result.before[0], after = result.after[0];
    $("attack-info").textContent = `${before.label} ${percent(before.probability)} → ${after.label} ${percent(after.probability)}` +
      (result.success ? " (fooled)" : " (not fooled)");
  } catch (error) { $("attack-info").textContent = error.message; }
}

async function startJob() {
  if (!imageId) return say("choose an image first", true);
  try {
    const job = await post("/api/jobs", request({kind: $("job-kind").value, steps: Number($("job-steps").value)}));
    jobId = job.id;
    $("job-cancel").disabled = false;
    $("job-result").replaceChildren();
    pollJob();
  } catch (error) { $("job-status").textContent = error.message; }
}

async function pollJob() {
  if (!jobId) return;
  const job = await api(`/api/jobs/${jobId}`);
  $("job-progress").value = job.progress;
  $("job-status").textContent = `${job.status}: ${job.message}`;
  if (job.status === "queued" || job.status === "running") { setTimeout(pollJob, 500); return; }
  $("job-cancel").disabled = true;
  if (job.status === "done" && job.result) {
    if (job.result.html_url) {
      const link = document.createElement("a");
      link.href = job.result.html_url; link.textContent = "open the report"; link.target = "_blank";
      $("job-result").replaceChildren(link);
    }
    if (job.result.image) { const img = new Image(); img.src = job.result.image; $("job-result").replaceChildren(img); }
  }
  jobId = null;
}

async function cancelJob() { if (jobId) await api(`/api/jobs/${jobId}`, {method: "DELETE"}); }

async function start() {
  const [models, samples, methods] = await Promise.all([api("/api/models"), api("/api/samples"), api("/api/methods")]);
  fill($("model"), models.models);
  fill($("sample"), samples.samples);
  fill($("method"), methods.attribution);
  fill($("attack-method"), methods.attack);
  fill($("job-kind"), methods.jobs);
  $("sample").addEventListener("change", chooseSample);
  $("file").addEventListener("change", upload);
  $("model").addEventListener("change", () => { loadLayers(); refresh(); });
  $("explain").addEventListener("click", explain);
  $("attack").addEventListener("click", attack);
  $("eps").addEventListener("input", () => { $("eps-text").textContent = `${$("eps").value}/255`; });
  $("eps").addEventListener("change", attack);
  $("job-start").addEventListener("click", startJob);
  $("job-cancel").addEventListener("click", cancelJob);
  $("layer-filter").addEventListener("input", () => {
    const text = $("layer-filter").value;
    for (const row of $("layers").tBodies[0].rows) row.hidden = !row.cells[0].textContent.includes(text);
  });
  await Promise.all([loadLayers(), chooseSample()]);
}

start().catch((error) => say(error.message, true));
