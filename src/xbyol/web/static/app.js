// xbyol explorer: browse test images, explain any concept text, upload an image.
"use strict";

const $ = (id) => document.getElementById(id);
// ref: the image on screen; token: bumped by every selection and every explain request, so an
// answer that arrives after the user moved on (another image, a newer request) is dropped.
const state = { page: 0, pages: 1, ref: null, token: 0, explaining: 0 };
const known = new Set((document.body.dataset.knownConcepts || "").split("|").filter(Boolean).map((c) => c.toLowerCase()));
let textModelLoaded = document.body.dataset.textModelLoaded === "yes";

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.classList.toggle("error", Boolean(isError));
}

async function api(url, options) {
  const resp = await fetch(url, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : `${resp.status} ${resp.statusText}`;
    throw new Error(msg);
  }
  return body;
}

function postJSON(url, body) {
  return api(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function el(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const c of children || []) node.append(c);
  return node;
}

function sameRef(a, b) {
  return Boolean(a && b) && a.index === b.index && a.upload === b.upload;
}

async function loadPage(page) {
  try {
    const data = await api(`/api/images?page=${page}`);
    state.page = data.page;
    state.pages = data.pages;
    const thumbs = $("thumbs");
    thumbs.replaceChildren();
    for (const item of data.images) {
      const img = el("img", { src: item.url, alt: `test image ${item.index}` });
      const title = [`#${item.index}`, item.label, item.caption].filter(Boolean).join(" | ");
      const button = el("button", { type: "button", title: title }, [img]);
      button.dataset.index = item.index;
      button.addEventListener("click", () => selectTest(item));
      thumbs.append(button);
    }
    $("page-info").textContent = `page ${data.page + 1} / ${data.pages}`;
    $("prev").disabled = data.page === 0;
    $("next").disabled = data.page + 1 >= data.pages;
    markActive();
    if (!state.ref && data.images.length) selectTest(data.images[0]);
  } catch (e) {
    setStatus(`could not list the test images: ${e.message}`, true);
  }
}

function markActive() {
  for (const b of $("thumbs").children) {
    b.classList.toggle("active", Boolean(state.ref && state.ref.index === Number(b.dataset.index)));
  }
}

function showConcepts(data) {
  const ol = $("top-concepts");
  ol.replaceChildren();
  const uniform = 100 * data.uniform;
  for (const c of data.concepts) {
    const b = el("button", { type: "button", textContent: c.concept });
    b.addEventListener("click", () => { $("concept").value = c.concept; explain(); });
    const pct = 100 * c.weight;
    const ratio = el("span", { className: "ratio", textContent: ` (${(pct / uniform).toFixed(1)}x uniform)` });
    ol.append(el("li", {}, [b, ` ${pct.toFixed(1)}%`, ratio]));
  }
  const k = Math.round(1 / data.uniform);
  $("uniform-level").textContent =
    `Weights over the ${k} concepts sum to 100%; a weight favouring none of them would be ${uniform.toFixed(1)}% (100/${k}).`;
}

// A new image on screen: everything computed for the previous one is stale.
function showImage(ref, url, title, info, truth) {
  state.ref = ref;
  state.token += 1;
  markActive();
  $("selected-img").src = url;
  $("selected-title").textContent = title;
  $("selected-info").textContent = info;
  $("selected-truth").textContent = truth && truth.length ? `ground-truth concepts: ${truth.join(", ")}` : "";
  $("results").replaceChildren();
  $("top-concepts").replaceChildren();
  $("uniform-level").textContent = "";
  setExplaining(false);
  return state.token;
}

async function selectTest(item) {
  const ref = { index: item.index };
  const token = showImage(ref, item.url, `test image ${item.index}`,
    [item.label && `label: ${item.label}`, item.caption].filter(Boolean).join(" | "), item.concepts);
  setStatus("computing the top concepts ...");
  try {
    const data = await postJSON("/api/concepts", ref);
    if (token !== state.token && !sameRef(ref, state.ref)) return; // the user moved on
    if (sameRef(ref, state.ref)) { showConcepts(data); if (token === state.token) setStatus(""); }
  } catch (e) {
    if (sameRef(ref, state.ref)) setStatus(`could not compute the top concepts: ${e.message}`, true);
  }
}

function selectedMethods() {
  return Array.from(document.querySelectorAll("#methods input:checked:not(:disabled)")).map((i) => i.value);
}

function setExplaining(on) {
  $("explain").disabled = on;
  document.body.classList.toggle("busy", on);
}

function applyOpacity() {
  const v = Number($("opacity").value) / 100;
  $("opacity-value").textContent = `${Math.round(100 * v)}%`;
  for (const img of document.querySelectorAll("#results img.heatmap")) img.style.opacity = String(v);
}

function showResults(data) {
  const base = el("img", { src: data.image, alt: "image" });
  const figures = [el("figure", {}, [el("div", { className: "stack" }, [base]), el("figcaption", { textContent: "image" })])];
  for (const h of data.heatmaps) {
    const under = el("img", { src: data.image, alt: "", className: "under" });
    const layer = el("img", { src: h.heat, alt: `${h.method} heatmap for ${data.concept}`, className: "heatmap" });
    layer.dataset.method = h.method;
    const layers = [under, layer];
    if (h.outline) layers.push(el("img", { src: h.outline, alt: "", className: "outline" }));
    figures.push(el("figure", {}, [el("div", { className: "stack" }, layers),
      el("figcaption", { textContent: `${h.method} (${h.ms} ms)` })]));
  }
  $("results").replaceChildren(...figures);
  $("colorbar").hidden = false;
  $("mask-note").textContent = data.mask ? `outline: ground-truth mask of "${data.mask}"` : "";
  applyOpacity();
}

async function explain() {
  const concept = $("concept").value.trim();
  if (!state.ref) { setStatus("select or upload an image first", true); return; }
  if (!concept) { setStatus("type a concept, e.g. red circle", true); return; }
  const methods = selectedMethods();
  if (!methods.length) { setStatus("tick at least one method", true); return; }
  const ref = state.ref;
  state.token += 1;
  const token = state.token;
  setExplaining(true);
  const loading = !textModelLoaded && !known.has(concept.toLowerCase());
  setStatus(loading
    ? `loading the text model for "${concept}" (the first new concept text takes a few seconds), then explaining with ${methods.join(", ")} ...`
    : `explaining "${concept}" with ${methods.join(", ")} ...`);
  try {
    const data = await postJSON("/api/explain", Object.assign({ concept: concept, methods: methods }, ref));
    if (loading) textModelLoaded = true;
    if (token !== state.token) return; // a newer request or another image: this answer is stale
    showResults(data);
    setStatus(`"${data.concept}": cosine with the image ${data.score.toFixed(3)} (1: same direction, 0: unrelated)`);
  } catch (e) {
    if (token !== state.token) return;
    $("results").replaceChildren();
    setStatus(e.message, true);
  } finally {
    if (token === state.token) setExplaining(false);
  }
}

async function upload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) { setStatus("choose an image file first", true); return; }
  const limit = Number(document.body.dataset.maxUpload);
  if (file.size > limit) { setStatus(`the file is ${file.size} bytes; at most ${limit} are accepted`, true); return; }
  const form = new FormData();
  form.append("image", file);
  state.token += 1; // an explanation still running for the previous image is now stale
  const token = state.token;
  setExplaining(false);
  setStatus("uploading ...");
  try {
    const data = await api("/api/upload", { method: "POST", body: form });
    if (token !== state.token) return;
    showImage({ upload: data.upload }, data.url, "your image", `${file.name} (centre-cropped to a square)`, null);
    showConcepts(data);
    setStatus("uploaded; type a concept and press Explain");
  } catch (e) {
    if (token !== state.token) return;
    setStatus(`upload refused: ${e.message}`, true);
  }
}

$("explain-form").addEventListener("submit", (e) => { e.preventDefault(); explain(); });
$("upload-form").addEventListener("submit", upload);
$("prev").addEventListener("click", () => loadPage(state.page - 1));
$("next").addEventListener("click", () => loadPage(state.page + 1));
$("opacity").addEventListener("input", applyOpacity);
loadPage(0);
