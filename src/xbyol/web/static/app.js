// xbyol explorer: browse test images, explain any concept text, upload an image.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { page: 0, pages: 1, ref: null, busy: false };

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

function el(tag, props, children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const c of children || []) node.append(c);
  return node;
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

function showConcepts(list) {
  const ol = $("top-concepts");
  ol.replaceChildren();
  for (const c of list) {
    const b = el("button", { type: "button", textContent: c.concept });
    b.addEventListener("click", () => { $("concept").value = c.concept; explain(); });
    ol.append(el("li", {}, [b, ` ${(100 * c.weight).toFixed(1)}%`]));
  }
}

async function selectTest(item) {
  state.ref = { index: item.index };
  markActive();
  $("selected-img").src = item.url;
  $("selected-title").textContent = `test image ${item.index}`;
  $("selected-info").textContent = [item.label && `label: ${item.label}`, item.caption].filter(Boolean).join(" | ");
  $("results").replaceChildren();
  $("top-concepts").replaceChildren();
  try {
    const data = await api(`/api/concepts/${item.index}`);
    if (state.ref && state.ref.index === item.index) showConcepts(data.concepts);
  } catch (e) {
    setStatus(`could not compute the top concepts: ${e.message}`, true);
  }
}

function selectedMethods() {
  return Array.from(document.querySelectorAll("#methods input:checked")).map((i) => i.value);
}

async function explain() {
  if (state.busy) return;
  const concept = $("concept").value.trim();
  if (!state.ref) { setStatus("select or upload an image first", true); return; }
  if (!concept) { setStatus("type a concept, e.g. red circle", true); return; }
  const methods = selectedMethods();
  if (!methods.length) { setStatus("tick at least one method", true); return; }
  state.busy = true;
  $("explain").disabled = true;
  setStatus(`explaining "${concept}" with ${methods.join(", ")} ...`);
  try {
    const data = await api("/api/explain", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ concept: concept, methods: methods }, state.ref)),
    });
    const figures = [el("figure", {}, [el("img", { src: data.image, alt: "image" }), el("figcaption", { textContent: "image" })])];
    for (const h of data.heatmaps) {
      const img = el("img", { src: h.src, alt: `${h.method} heatmap for ${data.concept}`, className: "heatmap" });
      img.dataset.method = h.method;
      figures.push(el("figure", {}, [img, el("figcaption", { textContent: `${h.method} (${h.ms} ms)` })]));
    }
    $("results").replaceChildren(...figures);
    setStatus(`"${data.concept}": cosine with the image ${data.score.toFixed(3)}`);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    state.busy = false;
    $("explain").disabled = false;
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
  setStatus("uploading ...");
  try {
    const data = await api("/api/upload", { method: "POST", body: form });
    state.ref = { upload: data.upload };
    markActive();
    $("selected-img").src = data.url;
    $("selected-title").textContent = "your image";
    $("selected-info").textContent = file.name;
    $("results").replaceChildren();
    showConcepts(data.concepts);
    setStatus("uploaded; type a concept and press Explain");
  } catch (e) {
    setStatus(`upload refused: ${e.message}`, true);
  }
}

$("explain-form").addEventListener("submit", (e) => { e.preventDefault(); explain(); });
$("upload-form").addEventListener("submit", upload);
$("prev").addEventListener("click", () => loadPage(state.page - 1));
$("next").addEventListener("click", () => loadPage(state.page + 1));
loadPage(0);
