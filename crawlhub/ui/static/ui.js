// CrawlHub dashboard: local times, and the live log of a running run. No inline script
// anywhere; everything a spider wrote is inserted as text (textContent), never as markup.
"use strict";

function localiseTimes(root) {
  root.querySelectorAll("time[datetime]").forEach(function (el) {
    if (el.dataset.local) return;
    const when = new Date(el.getAttribute("datetime"));
    if (isNaN(when)) return;
    el.textContent = when.toLocaleString(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
    });
    el.dataset.local = "1";
  });
}

function logLine(data) {
  const line = document.createElement("div");
  line.className = "line line-" + data.stream;
  line.dataset.seq = data.seq;
  const seq = document.createElement("span");
  seq.className = "seq";
  seq.textContent = data.seq;
  const attempt = document.createElement("span");
  attempt.className = "attempt";
  attempt.textContent = "#" + data.attempt;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = data.line;
  line.append(seq, attempt, text);
  return line;
}

function followLog() {
  const log = document.getElementById("log");
  if (!log) return;
  // The newest lines are at the end: show them, as the live page did before it reloaded.
  if (log.dataset.newest === "true") log.scrollTop = log.scrollHeight;
  if (log.dataset.live !== "true" || !window.EventSource) return;
  const source = new EventSource(log.dataset.streamUrl + "?after_seq=" + log.dataset.after);
  source.addEventListener("log", function (event) {
    const data = JSON.parse(event.data);
    if (log.querySelector('[data-seq="' + data.seq + '"]')) return;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 30;
    log.append(logLine(data));
    const empty = document.getElementById("log-empty");
    if (empty) empty.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  });
  source.addEventListener("status", function () {
    source.close();
    window.setTimeout(function () { window.location.reload(); }, 300);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  localiseTimes(document);
  followLog();
  document.body.addEventListener("htmx:afterSwap", function (event) {
    localiseTimes(event.target);
  });
});
