// Live progress of a mailing being sent: polls the mailing's progress endpoint every two seconds
// and updates the bar, the counts per state and the sentence in the polite live region.
// Without it the page shows the progress as it was when loaded; reloading updates it.
"use strict";

(function () {
  const INTERVAL_MS = 2000;
  const MAX_FAILURES = 5;
  const section = document.querySelector("[data-progress-url]");
  if (!section || section.dataset.active !== "true") return;
  const bar = section.querySelector("progress");
  const summary = section.querySelector("[data-progress-summary]");
  let failures = 0;

  function show(data) {
    if (data.total > 0) {
      bar.max = data.total;
      bar.value = data.done;
      bar.textContent = data.percent + " %";
    }
    Object.entries(data.counts).forEach(function ([state, count]) {
      const cell = section.querySelector('[data-count="' + state + '"]');
      if (cell) cell.textContent = String(count);
    });
    const total = section.querySelector("[data-count-total]");
    if (total) total.textContent = String(data.total);
    // Only a changed sentence is written, so screen readers announce changes, not every poll.
    if (summary.textContent !== data.summary) summary.textContent = data.summary;
    document.querySelectorAll("[data-mailing-status]").forEach(function (badge) {
      badge.textContent = data.status_label;
      badge.className = "badge mailing-status status-" + data.status;
    });
    if (!data.active) {
      document.querySelectorAll("[data-hide-when-done]").forEach(function (element) { element.hidden = true; });
    }
  }

  async function poll() {
    try {
      const response = await fetch(section.dataset.progressUrl, {
        headers: {"Accept": "application/json"},
        credentials: "same-origin",
        cache: "no-store",
      });
      const type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("application/json") !== 0) throw new Error("progress: " + response.status);
      const data = await response.json();
      failures = 0;
      show(data);
      if (!data.active) return;  // finished or cancelled: nothing changes by itself any more
    } catch (error) {
      failures += 1;
      if (failures >= MAX_FAILURES) {
        summary.textContent = "Progress updates stopped: reload the page to see where the mailing stands.";
        return;
      }
    }
    window.setTimeout(poll, INTERVAL_MS);
  }

  window.setTimeout(poll, INTERVAL_MS);
})();
