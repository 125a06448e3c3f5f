// Asphalt pages: local times and ages, self-updating regions, and live job output.
// Everything here is an enhancement; without it pages still work (and reload while work runs).
"use strict";

const ANSI = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h";
  return Math.floor(h / 24) + " days";
}

function formatTimes(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at)) continue;
    el.textContent = at.toLocaleString() + " (" + ago(now - at) + " ago)";
  }
  for (const el of root.querySelectorAll("[data-since]")) {
    const at = new Date(el.dataset.since);
    if (!isNaN(at)) el.textContent = "running for " + ago(now - at);
  }
}

let refreshing = false;
const served = {}; // each live region's HTML as the server last sent it

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const response = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const fresh of doc.querySelectorAll("[data-live]")) {
      const name = fresh.dataset.live;
      const old = document.querySelector('[data-live="' + name + '"]');
      // Compare with what the server sent before, not the page (whose times were reformatted),
      // so an unchanged region is left alone: focus, selection and scroll stay where they are.
      if (!old || served[name] === fresh.innerHTML) continue;
      served[name] = fresh.innerHTML;
      old.innerHTML = fresh.innerHTML;
      formatTimes(old);
      for (const pre of old.querySelectorAll("pre.output")) pre.scrollTop = pre.scrollHeight;
    }
    document.body.dataset.livePage = doc.body.dataset.livePage;
  } catch (e) {
    // The master may be restarting; the next tick tries again.
  } finally {
    refreshing = false;
  }
}

function followOutput(pre) {
  const params = new URLSearchParams({ from: pre.dataset.offset });
  if (pre.dataset.attempt !== "0") params.set("attempt", pre.dataset.attempt);
  const source = new EventSource("/jobs/" + pre.dataset.job + "/output?" + params);
  const limit = 4 << 20; // characters kept on the page; the full text is one link away
  source.addEventListener("output", (event) => {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(event.data.replace(ANSI, ""));
    if (pre.textContent.length > limit) pre.textContent = pre.textContent.slice(-limit / 2);
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  });
  // The stream ends with the job; EventSource would reconnect on its own, so close it.
  source.addEventListener("end", () => {
    source.close();
    pre.dataset.follow = "done";
    refresh();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const region of document.querySelectorAll("[data-live]")) {
    served[region.dataset.live] = region.innerHTML;
  }
  for (const pre of document.querySelectorAll("pre.output")) pre.scrollTop = pre.scrollHeight;
  formatTimes(document);
  setInterval(() => formatTimes(document), 1000);
  // A select that chooses what the page shows (a template's project) goes there at once.
  for (const select of document.querySelectorAll("select[data-submit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  const pre = document.querySelector("pre#output[data-follow=yes]");
  if (pre) {
    pre.scrollTop = pre.scrollHeight;
    followOutput(pre);
  }
  setInterval(() => {
    if (document.body.dataset.livePage === "yes" && !document.hidden) refresh();
  }, 2000);
});
